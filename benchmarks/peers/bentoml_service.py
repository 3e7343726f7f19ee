"""The registered model on BentoML: POST /score with {"data": [records]} -> {"result": [labels]}.

    OPML_BENCH_MODEL=model.pkl OPML_BENCH_WORKERS=2 bentoml serve bentoml_service:Opml --working-dir benchmarks/peers
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from peer_model import labels, load


@bentoml.service(workers=int(os.environ.get("OPML_BENCH_WORKERS", "2")))
class Opml:
    def __init__(self) -> None:
        self.model = load(os.environ["OPML_BENCH_MODEL"])

    @bentoml.api(route="/score")
    def score(self, data: list[dict[str, Any]]) -> dict[str, list[str]]:
        return {"result": labels(self.model, data)}
