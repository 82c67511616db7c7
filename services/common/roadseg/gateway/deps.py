"""Typed dependencies of the gateway's routers (settings and storage come from :mod:`roadseg.http_api`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from roadseg.documents import PredictionRecord
from roadseg.gateway.jobs import prediction_store
from roadseg.http_api import StorageDep
from roadseg.inference.predictor import Predictor
from roadseg.jobs import JobStore


def predictor_dep(request: Request) -> Predictor:
    """The predictor loaded at start-up (jobs refresh it, so a newly exported version serves at once)."""
    return request.app.state.predictor


def predictions_dep(storage: StorageDep) -> JobStore[PredictionRecord]:
    """The prediction job records in the app's storage."""
    return prediction_store(storage)


PredictorDep = Annotated[Predictor, Depends(predictor_dep)]
PredictionsDep = Annotated[JobStore[PredictionRecord], Depends(predictions_dep)]
