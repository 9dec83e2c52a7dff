"""Alembic's scripts for the results database: ``env.py`` and the revisions in ``versions/``.

Run them through :mod:`collector.stores.schema` (a store does on every open, and so does
``edgemeter collector migrate``), never with the ``alembic`` command line: there is no
``alembic.ini``, and ``env.py`` runs on the connection the runner hands it.

Rules: a shipped revision is never edited or renumbered; a new one gets the next number as its id
(``0002``, ``0003``: the file ``versions/rNNNN_<slug>.py``) and spells out what it creates rather
than importing :mod:`collector.stores.tables`, which describes only the newest layout.
"""
