import Foundation
import XCTest
@testable import EdgeRuntime

final class ChatTemplateTests: XCTestCase {
    /// Ten template families (ChatML, Llama-2/3/3.1, Mistral v1/v3, Gemma, Phi-3, Qwen2.5, a feature
    /// sampler) over several conversations, against transformers' `render_jinja_template`.
    func testFamiliesRenderLikeTransformers() throws {
        let root = try TemplateJSON.parse(Data(contentsOf: TokenizerFixtures.url("chat_templates.json")))
        guard case let .array(families) = root else { return XCTFail("chat_templates.json is not a list") }
        XCTAssertGreaterThanOrEqual(families.count, 10)
        var checked = 0
        for case let .object(f) in families {
            guard case let .string(family)? = f["family"], case let .string(source)? = f["template"],
                  case let .array(cases)? = f["cases"] else { return XCTFail("bad family entry") }
            func token(_ k: String) -> String? { if case let .string(s)? = f[k] { return s }; return nil }
            let template = try ChatTemplate(source: source, bosToken: token("bos_token"), eosToken: token("eos_token"))
            for case let .object(c) in cases {
                var vars = [String: JinjaValue]()
                for k in c.keys where !["text", "error"].contains(k) { vars[k] = c[k] }
                let label = "\(family) \(c["messages"]!.json(sortKeys: false, indent: nil).prefix(80)) gen=\(c["add_generation_prompt"]!.pythonString)"
                if case let .string(expected)? = c["text"] {
                    XCTAssertEqual(try template.render(values: vars), expected, label)
                } else if case let .string(message)? = c["error"] {
                    XCTAssertThrowsError(try template.render(values: vars), label) { e in
                        XCTAssertEqual(e as? ChatTemplateError, .raised(message), label)
                    }
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 90)
    }

    /// The shared fixture's chat entries: SmolLM2's own template, rendered and tokenized.
    func testSmolLM2ChatFixture() throws {
        let tok = try TokenizerFixtures.smolLM2.get()
        let template = try ChatTemplate(tokenizer: tok)
        let root = try TokenizerFixtures.json("tokenizer_cases.json") as! [String: Any]
        for chat in root["chat"] as! [[String: Any]] {
            let messages = (chat["messages"] as! [[String: String]]).map { ChatMessage(role: $0["role"]!, content: $0["content"]!) }
            let text = try template.render(messages: messages, addGenerationPrompt: chat["add_generation_prompt"] as! Bool)
            XCTAssertEqual(text, chat["text"] as? String)
            XCTAssertEqual(tok.encode(text), [Int32](json: chat["ids"]))
            XCTAssertEqual(try template.encode(messages: messages, addGenerationPrompt: true, with: tok), [Int32](json: chat["ids"]))
        }
    }

    func testContextJSONKeepsKeyOrder() throws {
        let t = try ChatTemplate(source: "{{ tools | tojson }}|{{ messages[0].content }}", bosToken: nil, eosToken: nil)
        let json = #"{"tools": [{"z": 1, "a": {"y": [1.5, null], "b": "\u00e9\n"}}], "messages": [{"role": "user", "content": "hi"}]}"#
        XCTAssertEqual(try t.render(contextJSON: Data(json.utf8)), #"[{"z": 1, "a": {"y": [1.5, null], "b": "é\n"}}]|hi"#)
    }

    func testUnsupportedAndBrokenTemplatesAreClearErrors() {
        XCTAssertThrowsError(try ChatTemplate(source: "ok\n{% include 'other.jinja' %}", bosToken: nil, eosToken: nil)) { e in
            XCTAssertEqual(e as? ChatTemplateError, .unsupported(line: 2, feature: "the {% include %} tag"))
            XCTAssertTrue("\(e)".contains("include"))
        }
        XCTAssertThrowsError(try ChatTemplate(source: "{% for m in messages %}{{ m }}", bosToken: nil, eosToken: nil)) { e in
            XCTAssertEqual(e as? ChatTemplateError, .syntax(line: 1, message: "{% for %} without {% endfor %}"))
        }
        XCTAssertThrowsError(try ChatTemplate(source: "{{ 'unterminated }}", bosToken: nil, eosToken: nil))
        XCTAssertThrowsError(try ChatTemplate(source: "{{ x", bosToken: nil, eosToken: nil))
        let filter = try? ChatTemplate(source: "\n\n{{ messages | frobnicate }}", bosToken: nil, eosToken: nil)
        XCTAssertThrowsError(try filter?.render(messages: [], addGenerationPrompt: false)) { e in
            XCTAssertEqual(e as? ChatTemplateError, .unsupported(line: 3, feature: "the `frobnicate` filter"))
        }
        let typeError = try? ChatTemplate(source: "{{ 'a' + 1 }}", bosToken: nil, eosToken: nil)
        XCTAssertThrowsError(try typeError?.render(messages: [], addGenerationPrompt: false)) { e in
            guard case .render = e as? ChatTemplateError else { return XCTFail("\(e)") }
        }
        // Arithmetic edge cases neither trap nor exhaust memory.
        // (Python has big integers; past Int64 we fall back to floats rather than trap.)
        let math = try? ChatTemplate(source: "{{ -7 // 2 }} {{ -7 % 3 }} {{ '1e300' | int }} {{ 7 / 2 }}", bosToken: nil, eosToken: nil)
        XCTAssertEqual(try math?.render(messages: [], addGenerationPrompt: false), "-4 2 0 3.5")
        let overflow = try? ChatTemplate(source: "{{ 2 ** 70 }} {{ 9223372036854775807 + 1 }} {{ (-9223372036854775807 - 1) | abs }}", bosToken: nil, eosToken: nil)
        XCTAssertNoThrow(try overflow?.render(messages: [], addGenerationPrompt: false))
        let huge = try? ChatTemplate(source: "{{ 'x' * 100000000000 }}{{ range(10000000000) | length }}", bosToken: nil, eosToken: nil)
        XCTAssertThrowsError(try huge?.render(messages: [], addGenerationPrompt: false))
        let undefinedAttr = try? ChatTemplate(source: "{{ nothing.here }}", bosToken: nil, eosToken: nil)
        XCTAssertThrowsError(try undefinedAttr?.render(messages: [], addGenerationPrompt: false))
    }

    /// A namespace that holds itself (directly, through a list, or through a macro) is a reference
    /// cycle; the fuzzer found a template leaking one per render. Renders must free all of theirs.
    func testNamespacesAreFreedEvenWhenTheyHoldThemselves() throws {
        let sources = [
            "{% set ns = namespace(n=0) %}{% set ns.me = ns %}{{ ns.n }}",
            "{% set ns = namespace(items=[]) %}{% set ns.items = ns.items + [ns] %}{{ ns.items | length }}",
            "{% set a = namespace() %}{% set b = namespace(peer=a) %}{% set a.peer = b %}ok",
            "{% set ns = namespace(n=1) %}{% macro show() %}{{ ns.n }}{% endmacro %}{% set ns.f = show %}{{ ns.f() }}",
        ]
        let messages: [[String: Any]] = [["role": "user", "content": "hi"]]
        let before = JinjaNamespace.liveCount
        for source in sources {
            let template = try ChatTemplate(source: source, bosToken: nil, eosToken: nil)
            for _ in 0..<20 { _ = try template.render(context: ["messages": messages]) }
        }
        XCTAssertLessThanOrEqual(JinjaNamespace.liveCount, before, "namespaces outlived their render")
    }

    func testWhitespaceControlAndLoopScoping() throws {
        let source = """
        {%- set x = 1 -%}
          {% for i in [1, 2] %}
            {% set x = x + i %}
            <{{ x }}>
          {% endfor %}
        after={{ x }}
        {# comment #}
        {{- ' tight ' -}}
        !
        """
        // Jinja2: the loop's `set` does not leak; block tags take their line's indentation and newline.
        XCTAssertEqual(try ChatTemplate(source: source, bosToken: nil, eosToken: nil).render(messages: [], addGenerationPrompt: false),
                       "    <2>\n    <3>\nafter=1\n tight !")  // as jinja2 3.1 renders it
        // `{%+` keeps the indentation, `+%}` the newline (jinja2: 'a\n  \nb\nc').
        let plus = "a\n  {%+ if true +%}\nb\n{% endif %}\nc"
        XCTAssertEqual(try ChatTemplate(source: plus, bosToken: nil, eosToken: nil).render(messages: [], addGenerationPrompt: false), "a\n  \nb\nc")
    }
}
