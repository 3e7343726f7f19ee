"""The registered model on MLServer: a custom runtime whose REST handler reads the raw JSON records.

POST /score with {"data": [records]} -> {"result": [labels]}, dispatched to MLServer's parallel inference
workers (MLSERVER_PARALLEL_WORKERS). The model file is the model settings' parameters.uri; launch.py writes them.
"""

from __future__ import annotations

from typing import Any

from mlserver import MLModel
from mlserver.handlers import custom_handler
from peer_model import labels, load


class OpmlRuntime(MLModel):
    async def load(self) -> bool:
        self.model = load(self.settings.parameters.uri)
        return True

    @custom_handler(rest_path="/score")
    async def score(self, payload: dict[str, Any]) -> dict[str, list[str]]:
        return {"result": labels(self.model, payload["data"])}
