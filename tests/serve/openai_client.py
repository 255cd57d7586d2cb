"""Drives `tsumugi serve` with the official OpenAI Python client and prints what came back as JSON.

Usage: openai_client.py BASE_URL PROMPT CHAT_MESSAGE
The C++ test compares the greedy texts with Engine::complete on the same prompts.
"""
import json
import sys

try:
    import openai
except ImportError:
    sys.exit("the openai package is missing: /usr/bin/python3 -m pip install --break-system-packages -r tests/requirements-torch.txt")


def main():
    base_url, prompt, message = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="test-key", max_retries=0, timeout=60)
    out = {}
    models = client.models.list()
    out["models"] = [m.id for m in models.data]
    model = out["models"][0]

    c = client.completions.create(model=model, prompt=prompt, max_tokens=20, temperature=0)
    out["completion"] = {"text": c.choices[0].text, "finish_reason": c.choices[0].finish_reason,
                         "usage": c.usage.model_dump(), "id": c.id, "object": c.object}

    text, finish, usage = "", None, None
    for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=20, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        for ch in chunk.choices:
            text += ch.text
            finish = ch.finish_reason or finish
        if chunk.usage:
            usage = chunk.usage.model_dump()
    out["completion_stream"] = {"text": text, "finish_reason": finish, "usage": usage}

    messages = [{"role": "user", "content": message}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=20, temperature=0)
    out["chat"] = {"text": r.choices[0].message.content, "role": r.choices[0].message.role,
                   "finish_reason": r.choices[0].finish_reason, "usage": r.usage.model_dump(), "id": r.id,
                   "object": r.object}

    text, finish, usage, roles = "", None, None, []
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
        if chunk.usage:
            usage = chunk.usage.model_dump()
    out["chat_stream"] = {"text": text, "finish_reason": finish, "usage": usage, "roles": roles}

    # Errors come back as the client's typed exceptions.
    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
        out["not_found"] = "no error"
    except openai.NotFoundError as e:
        out["not_found"] = e.code
    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=2)
        out["bad_request"] = "no error"
    except openai.BadRequestError as e:
        out["bad_request"] = e.status_code
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
