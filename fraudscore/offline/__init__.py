"""Scoring files and tables: ``python -m fraudscore score``, Spark, ``python -m fraudscore backtest``.

Everything here scores with the service's own pieces (the verified model entry, ``OnnxForest``,
the thresholds in force, the request schema's feature checks), so a row scored offline gets the
answer ``/fraud_score`` gives. Needs the ``offline`` extra (pyarrow); Spark needs the ``spark`` one.
"""
