"""``/api/v1/model``: the card of the model that serves predictions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from roadseg.auth import Role, require
from roadseg.documents import ModelCard
from roadseg.gateway.deps import PredictorDep
from roadseg.http_api import SettingsDep
from roadseg.inference.predictor import Predictor

router = APIRouter(prefix="/api/v1/model", tags=["model"], dependencies=[require(Role.viewer)])


class ServedModelCard(ModelCard):
    """The model card plus how it is served right now."""

    serving: dict[str, Any] = Field(description="backend, model_name and model_version answering predictions.")
    threshold: float = Field(description="Threshold in use (ROADSEG_THRESHOLD, else the card's).")


def served_card(predictor: Predictor, threshold_override: float | None) -> dict[str, Any]:
    """The serving version's card with the serving facts and the threshold actually used."""
    predictor.refresh()
    return {**predictor.card, "serving": predictor.describe(), "threshold": predictor.threshold(threshold_override)}


@router.get("", response_model=ServedModelCard)
def model_card(predictor: PredictorDep, settings: SettingsDep) -> dict[str, Any]:
    """The serving model's card (version, backbone, threshold, metrics, training data)."""
    return served_card(predictor, settings.threshold)
