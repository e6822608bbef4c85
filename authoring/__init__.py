"""The motion-authoring page and the local HTTP API (`python app.py`).

session.py: the request/session JSON schema and its checks, split_then; jobs.py: the
one-at-a-time generation worker and the answer's encoding; api.py: POST /generate; page.py: the
viser page (one session per browser tab); scene.py: its 3D view; server.py: loading the model
and starting both.
"""
