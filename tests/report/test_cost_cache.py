"""C12's timings are kept with the key they were measured under: reused for the same config and code, measured
again after either changed (a stale measurement is never shown as a new one)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from bncli.config import ExperimentConfig
from bncli.report import mechanisms


def test_stale_timings_are_measured_again(tmp_path, monkeypatch):
    calls = []
    def fake(cfg):
        calls.append(cfg.hash())
        return {"n": len(calls)}

    monkeypatch.setattr(mechanisms, "measure_cost", fake)
    ctx = SimpleNamespace(out_dir=tmp_path)
    cfg = ExperimentConfig()
    assert mechanisms._cost_measurement(ctx, cfg) == {"n": 1}
    assert mechanisms._cost_measurement(ctx, cfg) == {"n": 1} and len(calls) == 1  # reused
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 7})})
    assert mechanisms._cost_measurement(ctx, other) == {"n": 2}  # another config: measured again
    cache = tmp_path / "studies" / "c12_cost" / "measure.json"
    stored = json.loads(cache.read_text())
    stored["key"]["code"] = "an older code hash"
    cache.write_text(json.dumps(stored))
    assert mechanisms._cost_measurement(ctx, other) == {"n": 3}  # other code: measured again
    cache.write_text(json.dumps({"times_s": {}}))  # the layout before keys existed
    assert mechanisms._cost_measurement(ctx, other) == {"n": 4}
    cache.write_text("{not json")
    assert mechanisms._cost_measurement(ctx, other) == {"n": 5}
