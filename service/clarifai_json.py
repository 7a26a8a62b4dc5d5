"""Core records -> Clarifai v2 JSON objects (the shapes of Clarifai's v2 REST API). Always snake_case,
always the fields the official clients index without checking."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec

from loupe.errors import TrainFailure
from loupe.learning.prediction import Prediction
from loupe.learning.training_set import unlabeled_rule_of
from loupe.learning.values import EvaluationStatus
from loupe.models.general import PUBLIC_APP_ID
from loupe.models.predictions import ModelView
from loupe.store.records import Concept, Evaluation, Input, ModelVersion, Region, VersionStatus

OK = {"code": 10000, "description": "Ok"}

VERSION_STATUS = {
    VersionStatus.UNTRAINED: (21102, "Model not yet trained"),
    VersionStatus.QUEUED: (21103, "Model is queued for training"),
    VersionStatus.TRAINING: (21101, "Model is currently training"),
    VersionStatus.TRAINED: (21100, "Model is trained and ready"),
}
FAILURE_STATUS = {TrainFailure.NO_POSITIVES: 21111, TrainFailure.NO_DATA: 21110}
EVALUATION_STATUS = {EvaluationStatus.QUEUED: 21303, EvaluationStatus.EVALUATING: 21301,
                     EvaluationStatus.EVALUATED: 21300, EvaluationStatus.FAILED: 21302}


def timestamp(seconds: float) -> str:
    """RFC 3339 with milliseconds and Z: the only form the Python client parses."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def concept_json(concept: Concept, app_id: str) -> dict[str, Any]:
    return {"id": concept.id, "name": concept.name, "app_id": app_id, "created_at": timestamp(concept.created_at)}


def input_json(record: Input, app_id: str, image_url: str, names: dict[str, str]) -> dict[str, Any]:
    concepts = [{"id": c, "name": names.get(c, c), "value": 1.0, "app_id": app_id} for c in record.concepts]
    concepts += [{"id": c, "name": names.get(c, c), "value": 0.0, "app_id": app_id} for c in record.not_concepts]
    image: dict[str, Any] = {"url": image_url}
    if record.crop:
        image["crop"] = record.crop
    data: dict[str, Any] = {"image": image, "concepts": concepts, "metadata": record.metadata}
    if record.geo is not None:
        # Only geo_point: the Python client validates an input's geo with additionalProperties: false.
        data["geo"] = {"geo_point": {"longitude": record.geo.longitude, "latitude": record.geo.latitude}}
    if record.regions:
        data["regions"] = [region_json(r, app_id, names) for r in record.regions]
    return {
        "id": record.id,
        "data": data,
        "created_at": timestamp(record.created_at),
        "status": {"code": 30000, "description": "Download complete"},
    }


def region_json(region: Region, app_id: str, names: dict[str, str]) -> dict[str, Any]:
    box = region.box
    return {"id": region.id,
            "region_info": {"bounding_box": {"top_row": box.top_row, "left_col": box.left_col,
                                             "bottom_row": box.bottom_row, "right_col": box.right_col}},
            "data": {"concepts": [{"id": c.id, "name": names.get(c.id, c.id), "value": c.value, "app_id": app_id}
                                  for c in region.concepts]}}


def version_status(version: ModelVersion) -> dict[str, Any]:
    if version.status is VersionStatus.FAILED:
        return {"code": FAILURE_STATUS.get(version.failure, 21110), "description": "Model training failed",
                "details": version.detail}
    code, description = VERSION_STATUS[version.status]
    return {"code": code, "description": description}


def unlabeled_json(version: ModelVersion) -> dict[str, Any]:
    """What the version made of the app's inputs with no label for it, and why (loupe.training_set)."""
    return {"rule": unlabeled_rule_of(version.closed_environment, version.unlabeled_rule).value,
            "reason": version.unlabeled_reason,
            "seen": version.unlabeled_seen, "pseudo_labels": version.pseudo_labels,
            "self_training_strength": version.self_training_strength}


def version_json(version: ModelVersion, total_inputs: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": version.id,
        "created_at": timestamp(version.created_at),
        "status": version_status(version),
        "active_concept_count": len(version.concept_ids),
        "total_input_count": version.train_size if total_inputs is None else total_inputs,
    }
    if version.status is VersionStatus.TRAINED:
        out["train_stats"] = {"seconds": round(version.train_seconds, 4), "positives": version.positives,
                              "negatives": version.negatives, "unlabeled": unlabeled_json(version)}
    if version.evaluation is not None:
        out["metrics"] = metrics_json(version.evaluation, version)
    if version.thresholds:  # Loupe's: each concept's threshold and what held-out predictions showed there
        out["loupe"] = {"thresholds": [msgspec.to_builtins(t) for t in version.thresholds],
                        "scope_similarity": version.scope_similarity}
    return out


def model_json(view: ModelView, app_id: str, *, full: bool) -> dict[str, Any]:
    """`full`: output_info with the model's concepts (one model asked for by id). Otherwise the abbreviated
    form, with Clarifai's `message` and no concepts (lists, searches, predict outputs): the Java client
    takes any output_info carrying `message` for the abbreviated one, and the iOS SDK may read concepts
    of the model for the scores of a prediction."""
    model, version = view.model, view.version
    config: dict[str, Any] = {"concepts_mutually_exclusive": model.mutually_exclusive,
                              "closed_environment": model.closed_environment}
    if model.hyper_params:
        config["hyper_params"] = model.hyper_params
    info: dict[str, Any] = {"output_config": config, "type": view.kind.value, "type_ext": view.kind.value}
    if full:
        info["data"] = {"concepts": [concept_json(c, app_id) for c in view.concepts]}
    else:
        info["message"] = "Show output_info with: GET /models/{model_id}/output_info"
    out = {
        "id": model.id,
        "name": model.name,
        "created_at": timestamp(model.created_at),
        "app_id": PUBLIC_APP_ID if view.public else app_id,
        "model_version": version_json(version) if version is not None else None,
        "output_info": info,
    }
    if not view.public:  # Loupe's fields, beside Clarifai's (never inside output_info.data)
        out["loupe"] = {"serving": model.serving.value, "published_version_id": model.published or None,
                        "target_precision": model.target_precision, "concept_precision": model.concept_precision,
                        "publications": [msgspec.to_builtins(p) for p in model.publications[-10:]]}
    return out


def prediction_concepts(prediction: Prediction, app_id: str, names: dict[str, str], *, max_concepts: int,
                        min_value: float, select: frozenset[str] | None) -> list[dict[str, Any]]:
    out = []
    for score in prediction.concepts:
        if select is not None and score.concept_id not in select:
            continue
        if score.value < min_value:
            continue
        out.append({"id": score.concept_id, "name": names.get(score.concept_id, score.concept_id),
                    "value": round(score.value, 6), "app_id": app_id})
        if len(out) >= max_concepts:  # the General model has 1,000: stop at what is asked for
            break
    return out


def metrics_json(evaluation: Evaluation, version: ModelVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"status": {"code": EVALUATION_STATUS.get(evaluation.status, 21302),
                                      "description": evaluation.status, "details": evaluation.detail}}
    if evaluation.status is not EvaluationStatus.EVALUATED:
        return out
    aucs = [m.roc_auc for m in evaluation.concepts if m.roc_auc is not None]
    f1s = [m.f1 for m in evaluation.concepts]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    def std(values: list[float]) -> float:
        mu = mean(values)
        return (sum((v - mu) ** 2 for v in values) / len(values)) ** 0.5 if values else 0.0

    top5 = None
    if evaluation.predictions and version.mutually_exclusive:
        hits = [1 for p in evaluation.predictions if p.positives and
                version.concept_ids.index(p.positives[0]) in
                sorted(range(len(p.scores)), key=lambda j: -p.scores[j])[:5]]
        top5 = len(hits) / len(evaluation.predictions)
    out["summary"] = {
        "top1_accuracy": evaluation.top1_accuracy, "top5_accuracy": top5,
        "macro_avg_roc_auc": mean(aucs), "macro_std_roc_auc": std(aucs),
        "macro_avg_f1_score": mean(f1s), "macro_std_f1_score": std(f1s),
        "macro_avg_precision": mean([m.precision for m in evaluation.concepts]),
        "macro_avg_recall": mean([m.recall for m in evaluation.concepts]),
    }
    out["binary_metrics"] = [{
        "concept": {"id": m.concept_id, "name": m.concept_id},
        "num_pos": m.num_pos, "num_neg": m.num_neg, "num_tot": m.num_pos + m.num_neg,
        "roc_auc": m.roc_auc, "f1": m.f1, "precision": m.precision, "recall": m.recall,
        "average_precision": m.average_precision, "threshold": m.threshold,
        "roc_curve": ({"fpr": m.roc_curve[0], "tpr": m.roc_curve[1], "thresholds": m.roc_curve[2]}
                      if m.roc_curve else None),
        "precision_recall_curve": {"precision": m.pr_curve[0], "recall": m.pr_curve[1],
                                   "thresholds": m.pr_curve[2]} if m.pr_curve else None,
    } for m in evaluation.concepts]
    if evaluation.confusion:
        cids = evaluation.confusion_concepts
        out["confusion_matrix"] = {"concept_ids": cids, "matrix": [
            {"actual": cids[a], "predicted": cids[p], "value": n}
            for a, row in enumerate(evaluation.confusion) for p, n in enumerate(row) if n]}
    out["test_set"] = [{"id": p.input_id, "fold": p.fold,
                        "predicted_concepts": [{"id": c, "value": round(v, 6)}
                                               for c, v in zip(version.concept_ids, p.scores)],
                        "ground_truth_concepts": [{"id": c, "value": 1.0} for c in p.positives]}
                       for p in evaluation.misclassified]
    return out
