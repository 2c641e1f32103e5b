"""The decision store: every verdict, the labels that come back, and the quality figures.

Knows no HTTP. ``DecisionLog`` (writer.py) takes records off the request path; the query modules
(queries.py, labels.py, quality.py) are synchronous functions on a :class:`Store` (run them in a
thread from async code); ``migrate`` (migrate.py) brings a database to the code's schema.
"""
