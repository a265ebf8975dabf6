import EdgeRuntime
import Foundation
import XCTest

/// The TOML 1.0 syntax check that runs before TOMLKit (whose toml++ aborts on some malformed input).
/// Valid documents must pass the check and then parse in TOMLKit — `DaemonConfiguration.parse` then
/// fails only on the (unknown) keys, never on syntax. Invalid ones must be a `configSyntax` error
/// with a line and column, never reach toml++.
final class TOMLSyntaxCheckTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Passes the syntax check and TOMLKit: any error must be about keys, not syntax.
    func assertValid(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        assertValid(Array(text.utf8), label: text, file: file, line: line)
    }

    func assertValid(_ bytes: [UInt8], label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNoThrow(try TOMLSyntaxCheck.validate(bytes, path: "v.toml"), "syntax check rejected: \(label)", file: file, line: line)
        do {
            _ = try DaemonConfiguration.parse(bytes, path: "v.toml")
        } catch {
            guard case .configKey = error else {
                return XCTFail("TOMLKit rejected a valid document: \(label) → \(error)", file: file, line: line)
            }
        }
    }

    /// Fails the check with a line/column error; `at` pins the position when given.
    func assertInvalid(_ bytes: [UInt8], label: String, at: (Int, Int)? = nil, mentioning: String? = nil,
                       file: StaticString = #filePath, line: UInt = #line) {
        do {
            try TOMLSyntaxCheck.validate(bytes, path: "/etc/x.toml")
            XCTFail("syntax check accepted invalid TOML: \(label)", file: file, line: line)
        } catch {
            guard case .configSyntax(let path, let l, let c, let reason) = error else {
                return XCTFail("\(label): not a syntax error: \(error)", file: file, line: line)
            }
            XCTAssertEqual(path, "/etc/x.toml", file: file, line: line)
            XCTAssertTrue(reason.hasPrefix("expected "), "\(label): \(reason)", file: file, line: line)
            if let (el, ec) = at {
                XCTAssertEqual(l, el, "line of \(label): \(error)", file: file, line: line)
                XCTAssertEqual(c, ec, "column of \(label): \(error)", file: file, line: line)
            }
            if let m = mentioning { XCTAssertTrue(reason.contains(m), "\(label): \(reason) does not mention \(m)", file: file, line: line) }
        }
        // The full parse reports the same syntax error (and so never hands the text to toml++).
        XCTAssertThrowsError(try DaemonConfiguration.parse(bytes, path: "/etc/x.toml"), label, file: file, line: line) { e in
            guard case .configSyntax = e as? DaemonError else { return XCTFail("\(label): \(e)", file: file, line: line) }
        }
    }

    func assertInvalid(_ text: String, at: (Int, Int)? = nil, mentioning: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        assertInvalid(Array(text.utf8), label: text, at: at, mentioning: mentioning, file: file, line: line)
    }

    // MARK: Valid documents (toml-test style)

    func testValidDocuments() {
        let documents = [
            "",
            "   \n\t\n",
            "# only a comment",
            "# c\nkey = 1 # c\n  # indented comment\n",
            "a-b_C9 = 1\n\"quoted key\" = 2\n'literal key' = 3\n\"\" = 4\n1234 = 5\n-_- = 6\n",
            "a.b . c = 1\na . d = 2\n\"x\".'y'.z = 3\n",
            "[t]\n[ t2 . \"x y\" ]  # comment\n[a.b.c]\n['lit'.\"q\"]\n",
            "[[arr]]\nx = 1\n[[arr]]\nx = 2\n[arr.sub]\ny = 3\n[[ arr2 ]]\n",
            "[a.b]\nc = 1\n[a]\nd = 2\n",
            #"s = "\b\t\n\f\r\"\\ \u00E9 \U0001F600 é ✓""#,
            #"s = 'C:\Users\nodejs\templates'"#,
            #"s = '<\i\c*\s*>'"#,
            "s = \"\"\"\nRoses are red\nViolets are blue\"\"\"",
            "s = \"\"\"\\\n    The quick \\\n\n    brown fox.\\\n    \"\"\"",
            "s = \"\"\"a\\   \n   b\"\"\"",
            #"s = """Here are two quotation marks: "". Simple enough.""""#,
            #"s = """Here are three quotation marks: ""\".""""#,
            #"s = """"This," she said, "is just a pointless statement.""""#,
            "s = \"\"\"\"\"\"",
            "s = \"\"\"\"\"\"\"\"",
            "s = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''",
            "s = '''Here are fifteen quotation marks: \"\"\"\"\"\"\"\"\"\"\"\"\"\"\"'''",
            "s = ''''That,' she said, 'is still pointless.''''",
            "s = '''a''b'''",
            "i1 = +99\ni2 = 42\ni3 = 0\ni4 = -17\ni5 = -0\ni6 = +0\ni7 = 1_000\ni8 = 5_349_221\ni9 = 1_2_3_4_5",
            "h1 = 0xDEADBEEF\nh2 = 0xdeadbeef\nh3 = 0xdead_beef\no1 = 0o01234567\no2 = 0o755\nb1 = 0b11010110\nb2 = 0b1_0\nh4 = 0x0",
            "max = 9223372036854775807\nmin = -9223372036854775808\nhmax = 0x7FFFFFFFFFFFFFFF\nomax = 0o777777777777777777777",
            "f1 = +1.0\nf2 = 3.1415\nf3 = -0.01\nf4 = 5e+22\nf5 = 1e06\nf6 = -2E-2\nf7 = 6.626e-34\nf8 = 224_617.445_991_228\nf9 = 0e0\nf10 = -0.0\nf11 = 1e1_0",
            "sf1 = inf\nsf2 = +inf\nsf3 = -inf\nsf4 = nan\nsf5 = +nan\nsf6 = -nan",
            "t = true\nf = false",
            "odt1 = 1979-05-27T07:32:00Z\nodt2 = 1979-05-27T00:32:00-07:00\nodt3 = 1979-05-27T00:32:00.999999+07:00\nodt4 = 1979-05-27 07:32:00Z\nodt5 = 1979-05-27t07:32:00z",
            "ldt1 = 1979-05-27T07:32:00\nldt2 = 1979-05-27T00:32:00.999999\nld1 = 1979-05-27\nlt1 = 07:32:00\nlt2 = 00:32:00.999999\nleap = 2000-02-29\nd = 1979-05-27 # a date then a comment",
            "a = []\nb = [ ]\nc = [1, 2, 3]\nd = [\"red\", 'yellow', \"\"\"green\"\"\"]\ne = [ [ 1, 2 ], [3, 4, 5] ]\nf = [ [ 1, 2 ], [\"a\", \"b\", \"c\"] ]",
            "mixed = [ 0.1, 0.2, 0.5, 1, 2, 5 ]\ncontributors = [\n  \"Foo Bar <foo@example.com>\",\n  { name = \"Baz Qux\", email = \"bazqux@example.com\", url = \"https://example.com/bazqux\" }\n]",
            "a = [\n  1, # one\n  2,\n  # a comment line\n  3,   # trailing comma next\n]\nb = [ # open\n]\nc = [\n\n1\n\n,\n\n2\n\n]",
            "name = { first = \"Tom\", last = \"Preston-Werner\" }\npoint = { x = 1, y = 2 }\nanimal = { type.name = \"pug\" }\nempty = {}\nsp = {   }\nnested = { a = { b = { c = [1, { d = 2 }] } } }",
            "x = { a = [\n  1,\n  2\n], b = \"\"\"\nmulti\n\"\"\" }",
            "a = 1\r\n[t]\r\nb = \"\"\"x\r\ny\"\"\"\r\nc = [\r\n1,\r\n]\r\n# c\r\n",
            "\u{FEFF}a = 1",
            "\ta\t=\t1\t#\ttabs\n[\ttab\t]\n",
            "# unicode comment: é ✓ 😀 and a tab\there\nk = \"é ✓ 😀\"\n'ключ' = 'значение'",
            "no_trailing_newline = 1",
            "[[fruits]]\nname = \"apple\"\n[fruits.physical]\ncolor = \"red\"\n[[fruits.varieties]]\nname = \"red delicious\"\n[[fruits]]\nname = \"banana\"",
            "deep = " + String(repeating: "[", count: TOMLSyntaxCheck.maxDepth) + String(repeating: "]", count: TOMLSyntaxCheck.maxDepth),
            "deep = " + String(repeating: "{ a = ", count: TOMLSyntaxCheck.maxDepth) + "1" + String(repeating: " }", count: TOMLSyntaxCheck.maxDepth),
        ]
        for d in documents { assertValid(d) }
    }

    func testTheShippedConfigAndRealisticConfigsPass() throws {
        let example = try String(contentsOf: Self.repoRoot.appendingPathComponent("packaging/config.toml"), encoding: .utf8)
        XCTAssertNoThrow(try TOMLSyntaxCheck.validate(Array(example.utf8), path: "config.toml"))
        XCTAssertNoThrow(try DaemonConfiguration.parse("""
            [server]   # the socket
            socket = '/tmp/x.sock'
            request_timeout = 2.5
            [adapters]
            trusted_keys = [
              "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",  # ops key
            ]
            [auth]
            inference_uids = [0, "root", 1_000]
            """, path: "t"))
    }

    // MARK: Invalid documents

    func testKnownTOMLPlusPlusAbortsAreSyntaxErrors() {
        assertInvalid("x = [}", at: (1, 6), mentioning: "a value")
        assertInvalid("x = {a=}", at: (1, 8), mentioning: "a value")
        assertInvalid("x = [,]", at: (1, 6))
        assertInvalid("x = [1,,2]", at: (1, 8))
        assertInvalid("a = {b=1,}", at: (1, 10), mentioning: "trailing comma")
        assertInvalid("[adapters]\ntrusted_keys = [}\n", at: (2, 17))
        assertInvalid("[=server]", at: (1, 2), mentioning: "a key")
        assertInvalid("a = 1\n[[\t!x]]", at: (2, 4))
        assertInvalid("[ =]", at: (1, 3))
    }

    func testFuzzRegressionInputsAreSyntaxErrors() throws {
        let dir = Self.repoRoot.appendingPathComponent("Tests/Fuzz/regressions/config-toml")
        let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
        XCTAssertGreaterThanOrEqual(files.count, 4)
        for f in files {
            assertInvalid(Array(try Data(contentsOf: f)), label: f.lastPathComponent)
        }
    }

    func testInvalidStrings() {
        assertInvalid("x = \"abc", at: (1, 9), mentioning: "closing")
        assertInvalid("x = \"abc\ny = 1", at: (1, 9))
        assertInvalid("x = 'abc", at: (1, 9))
        assertInvalid("x = \"\"\"abc", mentioning: "\"\"\"")
        assertInvalid("x = '''abc\n", mentioning: "'''")
        assertInvalid(#"x = "\q""#, at: (1, 6), mentioning: "escape")
        assertInvalid(#"x = "\x41""#, at: (1, 6))
        assertInvalid(#"x = "\e""#, at: (1, 6))
        assertInvalid(#"x = "\ ""#, at: (1, 6))
        assertInvalid(#"x = "\u12""#, mentioning: "hexadecimal")
        assertInvalid(#"x = "\uD800""#, at: (1, 6), mentioning: "surrogate")
        assertInvalid(#"x = "\U00110000""#, at: (1, 6))
        assertInvalid(#"x = "\"#)
        assertInvalid("x = \"\"\"a\\ b\"\"\"")
        assertInvalid("x = \"\"\"a\"\"\"\"\"\"", at: (1, 14))
        assertInvalid("x = '''a''''''")
        assertInvalid("\"\"\"k\"\"\" = 1")
        assertInvalid("x = \"a\u{01}b\"", at: (1, 7), mentioning: "control")
        assertInvalid("x = 'a\u{7F}b'", at: (1, 7))
        assertInvalid("x = \"\"\"a\u{00}b\"\"\"")
        assertInvalid("x = \"\"\"a\rb\"\"\"", mentioning: "line feed")
        assertInvalid("x = '''a\rb'''")
    }

    func testInvalidNumbersBooleansAndDates() {
        for (text, column) in [
            ("x = 01", 6), ("x = 1__0", 7), ("x = _1", 5), ("x = 1_", 7), ("x = 0x", 7), ("x = +0x1", 6),
            ("x = 0X1", 6), ("x = 0b2", 7), ("x = 0o8", 7), ("x = 0x_1", 7), ("x = 1.", 7), ("x = .1", 5), ("x = 1e", 7),
            ("x = 1.e1", 7), ("x = 1.0_", 9), ("x = 1e_1", 7), ("x = 00.1", 6), ("x = +", 6), ("x = 1 2", 7),
            ("x = 9223372036854775808", 5), ("x = -9223372036854775809", 6), ("x = 0x8000000000000000", 7),
            ("x = 99999999999999999999999", 5), ("x = Inf", 5), ("x = NaN", 5), ("x = +in", 6), ("x = True", 5), ("x = tru", 5),
            ("x = falsey", 10), ("x = 1979-13-01", 10), ("x = 1979-02-29", 13), ("x = 1900-02-29", 13), ("x = 1979-04-31", 13),
            ("x = 1979-05-27T25:00:00", 16), ("x = 1979-05-27T07:60:00", 19), ("x = 1979-05-27T07:32", 21), ("x = 07:32", 10),
            ("x = 1979-05-27T07:32:00+7:00", 25), ("x = 1979-05-27T07:32:00+24:00", 25), ("x = 1979-05-27T", 16), ("x = 1979-5-27", 10),
            ("x = 1979-05-27T07:32:00.", 25), ("x = 07:32:00Z", 13), ("x = 1979-05-27 07:32", 21), ("x = 12345-01-01", 10),
        ] {
            assertInvalid(text, at: (1, column))
        }
    }

    func testInvalidStructure() {
        assertInvalid("x =", at: (1, 4), mentioning: "a value")
        assertInvalid("x = ", at: (1, 5))
        assertInvalid("= 1", at: (1, 1), mentioning: "a key")
        assertInvalid("x 1", at: (1, 3), mentioning: "'='")
        assertInvalid("x = 1 y = 2", at: (1, 7), mentioning: "end of the line")
        assertInvalid("a..b = 1", at: (1, 3))
        assertInvalid(".a = 1", at: (1, 1))
        assertInvalid("a. = 1", at: (1, 4))
        assertInvalid("a = 1\nb = { c = 1\n}", at: (2, 12))
        assertInvalid("b = {\nc = 1}", at: (1, 6))
        assertInvalid("b = { c = 1, , d = 2 }", at: (1, 14))
        assertInvalid("b = { c = 1 d = 2 }", at: (1, 13))
        assertInvalid("b = { c }", at: (1, 9))
        assertInvalid("x = [1 2]", at: (1, 8))
        assertInvalid("x = [1,", at: (1, 8))
        assertInvalid("x = [", at: (1, 6))
        assertInvalid("x = [1]]", at: (1, 8))
        assertInvalid("x = {", at: (1, 6))
        assertInvalid("[a", at: (1, 3))
        assertInvalid("[a]]", at: (1, 4))
        assertInvalid("[[a]", at: (1, 5))
        assertInvalid("[[a] ]", at: (1, 5))
        assertInvalid("[ [a]]", at: (1, 3))
        assertInvalid("[]", at: (1, 2))
        assertInvalid("[a.]", at: (1, 4))
        assertInvalid("[a] x = 1", at: (1, 5))
        assertInvalid("[\"\"\"a\"\"\"]")
        assertInvalid("[a\nb]", at: (1, 3))
        assertInvalid("x = 1\r", at: (1, 6), mentioning: "line feed")
        assertInvalid("x = 1\ry = 2", at: (1, 6))
        assertInvalid("# comment \u{7F}", at: (1, 11), mentioning: "control")
        assertInvalid("# comment \u{00} nul", at: (1, 11))
        assertInvalid("x = 1\u{0C}", at: (1, 6))
        assertInvalid("\u{FEFF}\u{FEFF}a = 1", at: (1, 2))
        assertInvalid("ключ = 1", at: (1, 1), mentioning: "'к'")
        assertInvalid("a = 1\nb = 2\n  c = [\n1,\n  }", at: (5, 3))
    }

    func testInvalidUTF8IsALineColumnErrorAlsoFromAFile() throws {
        let cases: [([UInt8], (Int, Int))] = [
            (Array("a = 1\nx = \"".utf8) + [0xFF] + Array("\"".utf8), (2, 6)),
            (Array("x = \"é".utf8) + [0xC0, 0x80, 0x22], (1, 7)),          // overlong NUL
            (Array("# ".utf8) + [0xED, 0xA0, 0x80], (1, 3)),                // a surrogate
            (Array("x = '".utf8) + [0xE2, 0x82], (1, 6)),                   // truncated
            (Array("x = '".utf8) + [0xF4, 0x90, 0x80, 0x80, 0x27], (1, 6)), // past U+10FFFF
            ([0x80], (1, 1)),
        ]
        for (bytes, at) in cases { assertInvalid(bytes, label: "\(bytes)", at: at, mentioning: "UTF-8") }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("toml-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("config.toml")
        try Data(Array("[server]\nsocket = \"/tmp/".utf8) + [0xFE] + Array("\"\n".utf8)).write(to: file)
        XCTAssertThrowsError(try DaemonConfiguration.load(path: file.path, mustExist: true)) { e in
            guard case .configSyntax(let path, 2, 16, _) = e as? DaemonError else { return XCTFail("\(e)") }
            XCTAssertEqual(path, file.path)
            XCTAssertTrue("\(e)".contains("0xFE"), "\(e)")
        }
    }

    func testNestingIsCapped() {
        let depth = TOMLSyntaxCheck.maxDepth + 1
        assertInvalid("x = " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth), at: (1, 5 + depth - 1), mentioning: "nested")
        assertInvalid("x = " + String(repeating: "{a=", count: depth) + "1" + String(repeating: "}", count: depth), mentioning: "nested")
        // Far deeper than any stack could recurse: still an error, found at the cap.
        assertInvalid("x = " + String(repeating: "[{a=", count: 20_000), mentioning: "nested")
    }

    func testMessageNamesLineColumnAndWhatWasExpected() {
        XCTAssertThrowsError(try DaemonConfiguration.parse("[server]\nsocket = [}\n", path: "/etc/edge-runtime/config.toml")) { e in
            XCTAssertEqual("\(e)", "config /etc/edge-runtime/config.toml line 2, column 11: expected a value (a string, number, true/false, date/time, [array] or {inline table}), found '}': fix the TOML syntax")
        }
    }
}
