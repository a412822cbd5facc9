"""Guardrails: each silent failure provoked on purpose stops the run with its message."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from liafkd.config import load_config
from liafkd.distill.adapters import Adapters
from liafkd.distill.config import TeacherConfig
from liafkd.engine.build import build_student, load_indices
from liafkd.engine.checkpoint import load_checkpoint
from liafkd.engine.guardrails import CheckResult, GuardrailError, format_table, load_teacher
from liafkd.engine.guardrails.run import pretrained_result
from liafkd.engine.guardrails.step import (
    StepProbe,
    TeacherState,
    part_results,
    step_health,
    step_results,
    teacher_frozen_result,
    term_result,
)
from liafkd.engine.guardrails.summary import loss_term_summary
from liafkd.engine.guardrails.teacher import sanity_result, weights_result
from liafkd.engine.runs import build_distill_module, distill_student, train_detector
from liafkd.models.backbone import ResNetBackbone

CLASSES = ["Car", "Pedestrian", "Cyclist"]  # the synthetic set's classes


def save_teacher(cfg_path: Path, out: Path, class_names=CLASSES, rename=None) -> Path:
    """A randomly initialised teacher checkpoint, keys optionally renamed."""
    torch.manual_seed(0)
    state = build_student(load_config(cfg_path).model, len(class_names)).state_dict()
    if rename:
        state = {k.replace(*rename): v for k, v in state.items()}
    torch.save({"model": state, "meta": {"class_names": list(class_names)}}, out)
    return out


@pytest.fixture
def distill_config(tmp_path, tiny_config):
    """Factory: a tiny distill config against a random teacher. The teacher sanity
    threshold is 0 unless `checks` says otherwise (a random teacher scores about 0)."""
    teacher_yaml = tiny_config("teacher")

    def make(method="mimic", name="student", teacher=None, checks=None, **blocks) -> Path:
        raw = yaml.safe_load(tiny_config(name).read_text())
        checkpoint = teacher or save_teacher(teacher_yaml, tmp_path / "teacher.pt")
        raw["distill"] = {
            "method": method,
            "teacher": {"config": str(teacher_yaml), "checkpoint": str(checkpoint)},
            "checks": {"min_teacher_ap50": 0.0, **(checks or {})},
            **blocks,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    make.teacher_yaml = teacher_yaml
    return make


def stops_before_training(config: Path, match: str) -> str:
    with pytest.raises(GuardrailError, match=match) as err:
        distill_student(str(config), [])
    out = Path(load_config(config).output_dir)
    assert not (out / "final.pt").exists() and not (out / "metrics.jsonl").exists()
    return str(err.value)


def test_teacher_with_renamed_keys_stops_listing_them(distill_config, tmp_path):
    renamed = save_teacher(
        distill_config.teacher_yaml, tmp_path / "t.pt", rename=("head.", "bbox_head.")
    )
    message = stops_before_training(distill_config(teacher=renamed), "teacher weights")
    assert "missing keys: head." in message and "unexpected keys: bbox_head." in message
    assert "distill.teacher.allow_missing: true" in message

    allowed = TeacherConfig(
        config=str(distill_config.teacher_yaml), checkpoint=str(renamed), allow_missing=True
    )
    teacher = load_teacher(allowed, CLASSES)
    result = weights_result(teacher.load_report, allow_missing=True)
    assert result.status == "WARN" and "stay randomly initialised" in result.detail
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_teacher_of_other_classes_stops_with_both_lists(distill_config, tmp_path):
    other = save_teacher(distill_config.teacher_yaml, tmp_path / "t.pt", ["cat", "dog", "bird"])
    message = stops_before_training(distill_config(teacher=other), "teacher classes")
    assert "['cat', 'dog', 'bird']" in message and str(CLASSES) in message


def test_zero_distillation_weight_stops_naming_the_term(distill_config):
    config = distill_config("mimic", mimic={"weight": 0.0})
    message = stops_before_training(config, "term loss_mimic")
    assert "exactly 0" in message and "distill.mimic.weight is 0" in message


def test_detached_student_feature_stops_naming_each_term(distill_config, monkeypatch):
    adapt = Adapters.forward
    monkeypatch.setattr(
        Adapters, "forward", lambda self, feats: adapt(self, [f.detach() for f in feats])
    )
    config = distill_config("fgd", adapter="always")  # equal widths: no adapter otherwise
    message = stops_before_training(config, "no gradient into the student")
    for term in ("loss_fgd_fg", "loss_fgd_bg", "loss_fgd_att", "loss_fgd_global"):
        assert f"term {term}: " in message
    assert "distiller adapters" not in message  # the adapters still learn; the student not


def test_random_teacher_fails_the_sanity_check(distill_config):
    config = distill_config(checks={"min_teacher_ap50": 0.01, "teacher_batches": 1})
    message = stops_before_training(config, "teacher sanity")
    assert "below distill.checks.min_teacher_ap50 = 0.01" in message
    assert "on 3 val images (0 detections)" in message


def test_sanity_verdicts_by_hand():
    assert sanity_result(0.42, 12, 30, 80, 0.01, "").status == "PASS"
    failed = sanity_result(None, 12, 30, 0, 0.01, " (mean differs)")
    assert failed.status == "FAIL" and "AP50 0.00 (percent)" in failed.detail
    assert "(1.00 percent)" in failed.detail
    assert "(mean differs)" in failed.detail
    assert sanity_result(None, 12, 0, 0, 0.01, "").status == "SKIP"  # nothing to detect


def test_healthy_run_trains_as_an_unchecked_one_and_summarises_terms(distill_config):
    # a learnt weighting (lam > 0), so that there are a selector and instance dumps
    selector = {"selector": {"lam": 0.5}}
    checked = distill_config("liaf", name="checked", liaf=selector)
    unchecked = distill_config("liaf", name="unchecked", checks={"enabled": False}, liaf=selector)
    summary = distill_student(str(checked), [])
    distill_student(str(unchecked), [])
    out = Path(load_config(checked).output_dir)
    weights = load_checkpoint(out / "final.pt")["model"]
    plain = load_checkpoint(Path(load_config(unchecked).output_dir) / "final.pt")["model"]
    assert all(torch.equal(weights[k], plain[k]) for k in weights)  # the probe left no trace

    written = json.loads((out / "summary.json").read_text())
    assert written["loss_terms"] == summary["loss_terms"]
    terms = written["loss_terms"]
    assert {"loss_cls", "loss_liaf_fg", "loss_liaf_bg", "loss_liaf_entropy"} <= set(terms)
    assert sum(t["share"] for t in terms.values()) == pytest.approx(1.0)
    assert written["teacher"]["sanity"]["images"] == 3
    assert written["teacher"]["checkpoint"].endswith("teacher.pt")
    records = [json.loads(line) for line in (out / "instances" / "epoch_1.jsonl").open()]
    epoch_one = [r for r in map(json.loads, (out / "metrics.jsonl").open()) if r["type"] == "epoch"]
    assert epoch_one[0]["distill"]["num_instances"] == len(records)  # no probe rows


def test_teacher_that_would_train_fails(distill_config):
    config = distill_config("mimic")
    cfg = load_config(config)
    train_index, _ = load_indices(cfg)
    module = build_distill_module(cfg, str(config), train_index.class_names)
    module.teacher.requires_grad_(True)
    results = {r.name: r for r in step_health(module, cfg, None, train_index, torch.device("cpu"))}
    assert results["teacher frozen"].status == "FAIL"
    assert "tensors require grad" in results["teacher frozen"].detail
    state = TeacherState(trainable=[], in_optimizer=0, training=["head"], buffers_changed=[])
    assert "1 modules in train mode (head)" in teacher_frozen_result(state).detail


def test_term_and_part_verdicts_by_hand():
    probe = StepProbe(
        values={"loss_x": 0.0, "loss_liaf_align": 0.3},
        kd_names=["loss_x", "loss_liaf_align"],
        grads={"loss_x": {"student": 0.0}, "loss_liaf_align": {"student": 0.0, "selector": 0.2}},
        det_grad=1.0,
    )
    assert term_result(probe, "loss_x", None, []).status == "FAIL"
    assert term_result(probe, "loss_x", None, ["loss_x"]).status == "PASS"
    assert term_result(probe, "loss_liaf_align", None, []).status == "PASS"  # trains the selector
    assert [(r.name, r.status) for r in part_results(probe)] == [("distiller selector", "PASS")]
    probe.grads["loss_liaf_align"]["selector"] = 0.0
    assert part_results(probe)[0].status == "FAIL"


def test_pretrained_file_with_prefixed_keys_stops_train(tiny_config, tmp_path):
    backbone = ResNetBackbone(18, width=8)
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"module.{k}": v for k, v in backbone.state_dict().items()}, prefixed)
    clean = tmp_path / "clean.pth"
    torch.save(backbone.state_dict(), clean)
    model = load_config(tiny_config("probe")).model

    ok = model.model_copy(update={"pretrained": str(clean)})
    assert pretrained_result(build_student(ok, 3), ok).status == "PASS"
    allowed = model.model_copy(
        update={"pretrained": str(prefixed), "pretrained_allow_missing": True}
    )
    assert pretrained_result(build_student(allowed, 3), allowed).status == "WARN"

    raw = yaml.safe_load(tiny_config("broken").read_text())
    raw["model"]["pretrained"] = str(prefixed)
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(GuardrailError, match="pretrained") as err:
        train_detector(str(config), [])
    assert "100 backbone tensors missing: conv1.weight, bn1.weight" in str(err.value)
    assert "unexpected: module." in str(err.value)


def test_train_summary_lists_loss_terms(tiny_config, tmp_path):
    summary = train_detector(str(tiny_config("plain", max_steps=2)), [])
    assert set(summary["loss_terms"]) == {"loss_cls", "loss_bbox", "loss_dfl"}
    assert "teacher" not in summary


def test_loss_term_summary_by_hand(tmp_path):
    lines = [
        {"type": "train", "epoch": 1, "loss_a": 100.0},
        {"type": "epoch", "epoch": 1, "loss_a": 9.0, "loss_b": 1.0, "loss": 10.0},
        {"type": "epoch", "epoch": 2, "loss_a": 1.0, "loss_b": -1.0},
        {"type": "epoch", "epoch": 2, "loss_a": 3.0, "loss_b": -3.0},  # a rerun of epoch 2
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + '\n{"type": "ep')  # cut line
    terms = loss_term_summary(path)
    assert terms["loss_a"] == pytest.approx(
        {"mean": 6.0, "share": 6 / 7, "first": 9.0, "last": 3.0}
    )
    assert terms["loss_b"] == pytest.approx(
        {"mean": -1.0, "share": 1 / 7, "first": 1.0, "last": -3.0}
    )
    assert loss_term_summary(tmp_path / "absent.jsonl") == {}


def test_every_fail_carries_its_fix_printed_under_it():
    with pytest.raises(ValueError, match="needs its fix"):
        CheckResult("x", "FAIL", "broken")
    results = [
        CheckResult("ok", "PASS", "fine"),
        CheckResult("broken", "FAIL", "it broke", fix="mend it"),
    ]
    assert format_table(results).splitlines() == [
        "PASS  ok      fine",
        "FAIL  broken  it broke",
        "      fix:    mend it",
    ]
    assert str(GuardrailError(results)).splitlines() == [
        "1 check(s) failed before training:",
        "- broken: it broke",
        "  fix: mend it",
    ]


def test_a_part_without_gradient_fails_with_its_fix_unless_allowed():
    probe = StepProbe(
        values={"loss_liaf_fg": 0.5, "loss_liaf_entropy": 0.0},
        kd_names=["loss_liaf_fg", "loss_liaf_entropy"],
        grads={
            "loss_liaf_fg": {"student": 1.0, "selector": 0.0},
            "loss_liaf_entropy": {"student": 0.0, "selector": 0.0},
        },
        det_grad=1.0,
    )
    (failed,) = part_results(probe)
    assert failed.status == "FAIL" and failed.name == "distiller selector"
    assert "data.batch_size" in failed.fix and "allow_zero=[selector]" in failed.fix
    (allowed,) = part_results(probe, ["selector"])
    assert allowed.status == "PASS" and "allow_zero" in allowed.detail
    # a term allowed to be 0 says nothing about the part it does not reach
    assert part_results(probe, ["loss_liaf_entropy"])[0].status == "FAIL"
    statuses = {r.name: r.status for r in step_results(probe, None, ["selector", "loss_typo"])}
    assert statuses["distiller selector"] == "PASS"
    assert statuses["distill.checks.allow_zero"] == "WARN"  # loss_typo names nothing here


def test_step_health_fails_each_carry_a_fix():
    nan = float("nan")
    probe = StepProbe(
        values={"loss_cls": nan, "loss_x": 0.0, "loss_y": 0.2, "loss_z": nan},
        kd_names=["loss_x", "loss_y", "loss_z"],
        grads={
            "loss_x": {"student": 0.0, "adapters": 0.0},
            "loss_y": {"student": 0.0, "adapters": 0.0},
            "loss_z": {"student": nan, "adapters": 0.0},
        },
        det_grad=0.0,
        teacher=TeacherState(trainable=["w"], in_optimizer=1, training=[], buffers_changed=[]),
    )
    failed = [r for r in step_results(probe, None, []) if r.failed]
    assert {r.name for r in failed} == {
        "detection losses",
        "term loss_x",
        "term loss_y",
        "term loss_z",
        "distiller adapters",
        "teacher frozen",
    }
    assert all(len(r.fix) > 20 for r in failed)
