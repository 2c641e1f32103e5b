import logging

import pytest
from pydantic import BaseModel, ValidationError

from fraudscore.logs import ClientErrorFilter


class BodyIODescriptor(BaseModel):
    x: int


class ResponseModel(BaseModel):
    x: int


def _record(model) -> logging.LogRecord:
    with pytest.raises(ValidationError) as info:
        model.model_validate({"x": "nope"})
    exc = info.value
    return logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on %s [%s]",
                             ("/fraud_score", "POST"), (type(exc), exc, exc.__traceback__))


def test_body_validation_errors_become_one_info_line():
    record = _record(BodyIODescriptor)
    assert ClientErrorFilter({"BodyIODescriptor"}).filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == "rejected invalid request body for Body: 1 validation error(s)"


def test_other_validation_errors_stay_errors_with_their_traceback():
    record = _record(ResponseModel)
    assert ClientErrorFilter({"BodyIODescriptor"}).filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
