"""``mlzsl serve``: a web page and an HTTP API over one tagging model.

* :mod:`mlzsl.server.service` — the computing side, without HTTP: :class:`TagService` holds one
  :class:`~mlzsl.inference.tagger.Tagger`, caches label vectors per label list, checks every request
  against :class:`Limits` and runs one request at a time under a lock;
* :mod:`mlzsl.server.app` — the FastAPI application: ``GET /`` (the page, package data
  ``static/index.html``), ``GET /api/health``, ``GET /api/model``, ``POST /api/tag``; inference
  runs on one worker thread off the event loop, behind a bounded queue; an optional bearer token;
  every refused request gets a JSON 4xx ``{"error": "one line"}``;
* :mod:`mlzsl.server.client` — a small standard-library client of the API (tests, benchmark).

Nothing here is imported by ``import mlzsl``; the command line imports it when ``mlzsl serve``
runs.
"""
