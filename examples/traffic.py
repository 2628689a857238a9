"""Demo traffic through the spendtrail gateway with the real openai SDK.

    python examples/traffic.py GATEWAY_URL KEYS_FILE

KEYS_FILE holds one `application=key` per line (written by examples/demo.sh from
`spendtrail keys create`). Sends chat calls for several applications, one stream, calls whose
workload the registry does not know (quarantined in staging, refused in production), and calls
the provider simulator fails at random so the SDK retries them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import openai


def main(base_url: str, keys_file: Path) -> None:
    keys = dict(line.split("=", 1) for line in keys_file.read_text().split())
    sent = refused = 0

    def chat(app: str, workload: str, text: str, **extra) -> None:
        nonlocal sent, refused
        client = openai.OpenAI(base_url=base_url, api_key=keys[app], max_retries=3)
        try:
            client.chat.completions.create(
                model=extra.pop("model", "gpt-4o-mini"),
                messages=[{"role": "user", "content": text}],
                extra_headers={"X-Spendtrail-Workload": workload}, **extra)
            sent += 1
        except openai.APIStatusError as error:
            refused += 1
            print(f"  {app}: {error.status_code} {error.body.get('message', '')[:110]}")

    for i in range(6):
        chat("support-assistant", "user_facing", f"Draft a reply to ticket {i} " * 20)
        # max_tokens bounds what the budget reserves for the call (docs/budgets.md).
        chat("search-summaries", "batch", f"Summarize result page {i} " * 60, model="gpt-4o",
             max_tokens=250)
    for i in range(4):
        chat("contract-review", "batch", f"Review clause {i} " * 200, model="gpt-4.1-mini")

    stream = openai.OpenAI(base_url=base_url, api_key=keys["support-assistant"]).chat
    chunks = stream.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Stream it"}],
        extra_headers={"X-Spendtrail-Workload": "user_facing"})
    print(f"  stream: {sum(1 for _ in chunks)} chunks")

    # A workload class the registry does not know: quarantined where the policy allows it...
    chat("contract-review-staging", "experimental", "Try a new prompt " * 10)
    # ...and refused in production, naming the field and the allowed values.
    chat("contract-review", "experimental", "Try a new prompt " * 10)
    print(f"  sent {sent} calls through the gateway, {refused} refused by its policy")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
