"""Drives edge-runtimed's socket API with the official `openai` Python client.

Usage: python3 openai_client_check.py SOCKET_PATH EXPECTED_REPLY
Exits 0 when every check passes; otherwise prints which one failed and exits 1.
The transport is httpx (or httpx2 for openai >= 3) bound to the Unix socket with `uds=`.
"""
import sys

try:
    import httpx2 as httpx
except ImportError:
    import httpx
import openai

sock, expected = sys.argv[1], sys.argv[2]
client = openai.OpenAI(
    base_url="http://localhost/v1",
    api_key="unused",
    max_retries=0,
    http_client=httpx.Client(transport=httpx.HTTPTransport(uds=sock)),
)


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)


# completions, non-streaming, with logprobs
c = client.completions.create(model="base", prompt="Say hi", max_tokens=64, logprobs=2)
check(c.choices[0].text == expected, f"completion text {c.choices[0].text!r}")
check(c.choices[0].finish_reason == "stop", f"completion finish_reason {c.choices[0].finish_reason}")
check(c.usage.completion_tokens == len(expected.encode()), f"completion usage {c.usage}")
check(len(c.choices[0].logprobs.tokens) == len(expected.encode()), "completion logprobs.tokens length")
check(len(c.choices[0].logprobs.top_logprobs[0]) == 2, "completion top_logprobs width")

# chat, non-streaming, logprobs + top_logprobs, adapter extension via extra_body
r = client.chat.completions.create(
    model="base",
    messages=[{"role": "user", "content": "Hi"}],
    logprobs=True,
    top_logprobs=3,
    seed=7,
    temperature=0,
)
check(r.choices[0].message.content == expected, f"chat content {r.choices[0].message.content!r}")
check(r.choices[0].message.role == "assistant", "chat role")
lp = r.choices[0].logprobs.content
check(len(lp) == len(expected.encode()) and len(lp[0].top_logprobs) == 3, "chat logprobs shape")
check(isinstance(lp[0].bytes, list) and lp[0].logprob <= 0, "chat logprob entry fields")

r2 = client.chat.completions.create(
    model="alpha", messages=[{"role": "user", "content": "Hi"}], extra_body={"adapters": [{"name": "beta", "weight": 0.5}]}
)
check(r2.choices[0].message.content.endswith("[alpha*1.0,beta*0.5]"), f"adapters extension {r2.choices[0].message.content!r}")

# chat, streaming, with usage
text, finish, usage = "", None, None
for chunk in client.chat.completions.create(
    model="base", messages=[{"role": "user", "content": "Hi"}], stream=True, stream_options={"include_usage": True}
):
    if chunk.usage:
        usage = chunk.usage
    for ch in chunk.choices:
        text += ch.delta.content or ""
        finish = ch.finish_reason or finish
check(text == expected, f"streamed chat text {text!r}")
check(finish == "stop", f"streamed finish_reason {finish}")
check(usage is not None and usage.completion_tokens == len(expected.encode()), f"streamed usage {usage}")

# completions, streaming
text = "".join(ch.choices[0].text for ch in client.completions.create(model="base", prompt="x", stream=True) if ch.choices)
check(text == expected, f"streamed completion {text!r}")

# models and errors
ids = [m.id for m in client.models.list().data]
check(ids[0] == "base", f"models {ids}")
try:
    client.chat.completions.create(model="missing-adapter", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown adapter did not raise")
except openai.NotFoundError as e:
    check(e.status_code == 404, "404 status")
try:
    client.completions.create(model="base", prompt="x", temperature=5)
    check(False, "bad temperature did not raise")
except openai.BadRequestError as e:
    check("temperature" in str(e), f"400 message {e}")
print("ok")
