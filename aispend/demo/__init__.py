"""The demo: a simulated LLM upstream and the workloads that drive the stack.

`aispend demo upstream` serves OpenAI / Azure OpenAI / Anthropic compatible paths
(aispend.demo.upstream) so the gateway, tests and benchmarks run with no provider.
"""
