"""Regenerates the expected outputs in this folder from the Python reference stack.

Not run by the tests (they never need Python); kept so the fixtures can be re-made and audited:
    pip install tokenizers==0.23.3 transformers==5.23.0 sentencepiece jinja2
    python3 make_fixtures.py
transformers' GGUF tokenizer converter imports torch only for tensor reading it does not use
here; with no torch installed, put a stub `torch` package on PYTHONPATH.

Writes:
  variants.json      - the SmolLM2 vocabulary under other pre-tokenizers (Llama-3, Qwen2, GPT-4o
                       regexes, llama.cpp's smollm digit split, Metaspace...), with expected ids
  sp_llama/          - a SentencePiece BPE model with byte fallback (trained here on GPL-3 text),
                       converted to tokenizer.json exactly as transformers converts a llama GGUF
  sp_cases.json      - expected ids/decodes for sp_llama
  sp_llama_gguf_metadata.json - the tokenizer.ggml.* values a llama GGUF of that model holds (input of
                       the converter), so TokenizerExport can be checked against transformers' output
  random_cases.json  - 250 seeded random strings over a mixed alphabet: ids and decodes for three tokenizers
  chat_templates.json - six template families rendered by transformers' chat-template renderer
"""
import copy, json, os, sys
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))

TEXTS = [
    "", "Hello world", " leading space", "trailing space ", "  two  spaces  ", "\t\ttabs\tand\nnewlines\n\n",
    "I'm sure they'RE fine, WE'LL see; it's JOHN'S 'quoted' ''s", "don't Don'T DON'T",
    "1234567890 12 123 1234 3.14159 1,000,000", "Arabic-Indic ٣٤٥ and superscripts x²³ and ½ ⅓ Ⅻ",
    "line1\r\nline2\rline3\n \n  \n", "a\n\n\nb  \n  c", "!!! ??? ... --- ***", "  !!!hi  ,x",
    "Ça va? Ñandú. Łódź. Øresund. naïve café", "中文分词测试，你好世界！日本語のテキスト", "Привет, мир! Ελληνικά",
    "Emoji: 😀🎉👍 👨‍👩‍👧 🇫🇷", "Combining: é vs é; Hangul 한국어", "\ufeffBOM and zero\u200bwidth",
    "Math: ∑ᵢ xᵢ² ≤ ∞, x² + y³", "<|im_start|>user\nHi<|im_end|>", "text<|im_end|>more<|endoftext|>",
    "<|im_start |> not special", "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "def f(x):\n    return x ** 2\n\n\tprint(f(3))", "ALL CAPS SHOUTING AND MiXeD cAsE", "a" * 60,
    "URL: https://example.com/path?q=1&r=2#frag", "tab\u00a0nbsp\u3000ideographic space\u2003em",
    "ſ's long-s 'ſ", "O'Neill's café – “smart quotes” — ‘ok’",
]

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
GPT4O = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


VARIANTS = {
    "llama3_split": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(LLAMA3), BL]}},
    "qwen2_split": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(QWEN2), BL]}},
    "gpt4o_split_icu": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(GPT4O), BL]}},
    "gpt2_split_regex": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(GPT2), BL]}},
    "smollm_llamacpp_digits": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}},
    "bytelevel_prefix_space_nfkc": {
        "normalizer": {"type": "NFKC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}},
    "split_behaviours": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[.,;!?]"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Digits", "individual_digits": False},
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Contiguous", "invert": False},
        BL]}},
    "lowercase_nfd_removed": {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "StripAccents"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
            {"type": "Punctuation", "behavior": "Isolated"}, BL]}},
}


def variants():
    base = json.load(open(os.path.join(HERE, "smollm2", "tokenizer.json")))
    out = []
    for name, patch in VARIANTS.items():
        t = copy.deepcopy(base)
        t.update(patch)
        tok = Tokenizer.from_str(json.dumps(t))
        cases = [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids} for s in TEXTS]
        out.append({"name": name, **patch, "cases": cases})
    json.dump(out, open(os.path.join(HERE, "variants.json"), "w"), ensure_ascii=False, indent=1)


def sentencepiece_llama():
    import sentencepiece as spm
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer
    from transformers import PreTrainedTokenizerFast
    corpus = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()
    corpus += "\n" + "\n".join(TEXTS[1:]) * 3
    path = "/tmp/sp_corpus.txt"
    open(path, "w").write(corpus)
    spm.SentencePieceTrainer.train(input=path, model_prefix="/tmp/sp_llama", model_type="bpe", vocab_size=700,
                                   byte_fallback=True, character_coverage=0.9995, split_digits=True,
                                   allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
                                   normalization_rule_name="identity", bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
    sp = spm.SentencePieceProcessor(model_file="/tmp/sp_llama.model")
    tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(sp.get_piece_size())]
    # The tokenizer.ggml.* metadata a llama GGUF of this model holds.
    td = {"tokenizer_type": "llama", "tokens": tokens, "scores": scores, "token_type": types,
          "bos_token_id": 1, "eos_token_id": 2, "unk_token_id": 0}
    cfg = {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    json.dump(dict(td, architecture="llama", add_bos_token=True), open(os.path.join(HERE, "sp_llama_gguf_metadata.json"), "w"), ensure_ascii=False)
    backend, _ = convert_gguf_tokenizer("llama", td)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **cfg)
    d = os.path.join(HERE, "sp_llama")
    tok.save_pretrained(d)
    cases = []
    for s in TEXTS + ["<s>Hello</s> world", " Hello", "Hello<s>", "\u0000\u0001 controls", "\U0001F9EA\U0001F9EB new emoji"]:
        ids = tok.encode(s, add_special_tokens=False)
        cases.append({"text": s, "ids": ids, "ids_add_special": tok.encode(s, add_special_tokens=True),
                      "decoded": tok.decode(ids), "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                      "sentencepiece_ids": sp.encode(s)})
    json.dump(cases, open(os.path.join(HERE, "sp_cases.json"), "w"), ensure_ascii=False, indent=1)


def random_cases():
    """Seeded random strings over a mixed alphabet, encoded by the reference for three tokenizers."""
    import random
    rng = random.Random(20261122)
    alphabet = list("aAzZ09 '\t\n\r.,;!?-_/\\\"()") + ["  ", "\u00a0", "\u3000", "é", "e\u0301", "ß", "ſ", "İ", "中", "文", "한", "д", "Ж",
                "١", "²", "½", "Ⅻ", "😀", "👍🏽", "\U0001F9EA", "\u200b", "\ufeff", "'s", "'LL", "<|im_start|>", "<|im_end|>",
                "<s>", "</s>", "\x00", "\x7f", "▁", "Ġ", "<0x41>", "the", " the", "ing", "123", "4567"]
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(250)]
    base = json.load(open(os.path.join(HERE, "smollm2", "tokenizer.json")))
    llama3 = copy.deepcopy(base)
    llama3.update(VARIANTS["llama3_split"])
    toks = {"smollm2": Tokenizer.from_str(json.dumps(base)), "smollm2_llama3_split": Tokenizer.from_str(json.dumps(llama3)),
            "sp_llama": Tokenizer.from_file(os.path.join(HERE, "sp_llama", "tokenizer.json"))}
    out = {"texts": samples}
    for name, tok in toks.items():
        out[name] = [tok.encode(s, add_special_tokens=False).ids for s in samples]
        out[name + "_decoded"] = [tok.decode(tok.encode(s, add_special_tokens=False).ids, skip_special_tokens=False) for s in samples]
    json.dump(out, open(os.path.join(HERE, "random_cases.json"), "w"), ensure_ascii=False)


if __name__ == "__main__":
    what = sys.argv[1:] or ["variants", "sp", "chat", "random"]
    if "variants" in what: variants()
    if "random" in what: random_cases()
    if "sp" in what: sentencepiece_llama()
    if "chat" in what:
        import make_chat_fixtures
        make_chat_fixtures.main(HERE)
