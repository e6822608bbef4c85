"""The motion-authoring page and the local HTTP API (`python app.py`).

session.py: the request/session JSON schema and its checks; jobs.py: the one-at-a-time
generation worker and the answer's encoding; api.py: POST /generate; page.py: the viser page;
server.py: loading the model and starting both.
"""
