"""The metering gateway: an OpenAI / Azure OpenAI / Anthropic compatible reverse proxy.

It attributes each request to team / project / agent from the client's API key,
forwards it to the configured upstream with the provider key injected, reads token
usage from the response (streaming included), prices it, exposes the counters on its
own /metrics, and enforces the throttle table written through its admin API.

Modules: settings (config section), attribution, usage (per-provider parsing),
routes (which paths go where), throttle (SQLite store + limiter), admin (the
throttle API), metrics, proxy (the forwarding handler), app (wiring), cli.
"""
