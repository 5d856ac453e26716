"""The actuator: an Alertmanager webhook receiver that throttles, pauses and undoes.

`app` serves POST /alerts; `policy` decides what an alert should do; `store` keeps
the idempotency keys, the applied actions (for undo) and the append-only audit log;
`targets/` are the things that act (gateway, kubernetes, azure_apim, command, webhook).
"""
