"""Label headlines with an LLM endpoint into the store's `llm_labels` table (resumable, costed).

    python -m jobs.label --endpoint https://xyz.endpoints.huggingface.cloud        # TGI / Inference Endpoints
    python -m jobs.label --endpoint http://127.0.0.1:8000 --response-format openai --model NAME   # vLLM
    python -m jobs.label --endpoint http://127.0.0.1:8000 --response-format llamacpp            # llama.cpp
    python -m jobs.label --test-endpoint          # the built-in listing labeller's endpoint (demo, no LLM)
    python -m jobs.label --endpoint URL --estimate --usd-per-hour 8   # sample, then extrapolate time and cost
    ray job submit -- python -m jobs.label --endpoint URL ...

The endpoint token is read from $HF_TOKEN only. Re-running skips headlines already labelled ok.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

from finner.config import add_config_args
from finner.errors import FinnerError
from finner.label import LabelConfig
from finner.listing_server import ServerConfig, serve_chat
from finner.pipeline import cli
from finner.pipeline.label import LabelRunConfig, agreement_line, estimate_line, run_labeling
from finner.progress import say


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.label", __doc__.split("\n\n")[0])
    add_config_args(p, LabelConfig)
    add_config_args(p, LabelRunConfig)
    p.add_argument("--test-endpoint", action="store_true", help="start the built-in endpoint (the listing labeller, no LLM) for this run instead of --endpoint")
    p.add_argument("--listings", default=None, help="with --test-endpoint: company listing CSV the labeller reads (default: the embedded one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def body(label: LabelConfig, run: LabelRunConfig) -> None:
        if not label.endpoint and not args.test_endpoint:
            raise FinnerError("no endpoint: pass --endpoint URL (a chat-completions server) or --test-endpoint")
        store = cli.store_from(args)
        with contextlib.ExitStack() as stack:
            if args.test_endpoint:
                url = stack.enter_context(serve_chat(ServerConfig(listings=args.listings)))
                label = dataclasses.replace(label, endpoint=url, model="gazetteer", response_format="tgi")
                say(f"labeling with the built-in listing labeller endpoint at {url} (not an LLM)")
            cli.init_ray()
            summary = run_labeling(store, label, run, progress=not args.quiet)
        say(summary.line(run))
        if summary.estimate:
            say(estimate_line(summary.estimate))
        if summary.agreement:
            say(agreement_line(summary.agreement))

    return cli.run(body, args, "label", configs=(LabelConfig, LabelRunConfig))


if __name__ == "__main__":
    sys.exit(main())
