"""GPU hourly prices: `prices.gpu` from config first, then a small table of examples.

The defaults are EXAMPLES to get a first estimate on screen, not list prices we could
verify: each is a per-GPU hourly rate read from the page named in its comment (a copy
of AWS's EC2 Capacity Blocks pricing page, "effective accelerator hourly rate", prices
in force until 2025-01-01, read 2026-11-23). Real rates depend on cloud, region, commitment
and discounts: set `prices.gpu` in aispend.yaml to what you pay, keyed by the NVML
model name that `nvidia-smi --query-gpu=name --format=csv` prints.
"""

from __future__ import annotations

from aispend.config import Prices

# NVML model name -> example hourly price per GPU (USD).
DEFAULT_GPU_HOURLY_PRICES: dict[str, float] = {
    # Example. p5.48xlarge (8 x H100), US East (N. Virginia), effective accelerator
    # hourly rate $4.916; source: AWS "Amazon EC2 Capacity Blocks for ML Pricing",
    # 2024-12.
    "NVIDIA H100 80GB HBM3": 4.916,
    # Example. p5e/p5en (8 x H200), US East (Ohio), effective accelerator hourly
    # rate $5.408; same source and date as above.
    "NVIDIA H200": 5.408,
    # Example. p4d.24xlarge (8 x A100 40GB), US East (Ohio), effective accelerator
    # hourly rate $1.844; same source and date as above.
    "NVIDIA A100-SXM4-40GB": 1.844,
}


def gpu_hourly_price(model_name: str, prices: Prices) -> float | None:
    """Hourly price of one GPU of `model_name` in the reporting currency; None when
    neither config nor table knows it.

    Matching is exact first, then case-insensitive (NVML names are stable strings such
    as "NVIDIA H100 80GB HBM3"); `prices.gpu` always wins over the examples, which are
    in US dollars (converted with `prices.usd_rate`).
    """
    for table, scale in ((prices.gpu, 1.0), (DEFAULT_GPU_HOURLY_PRICES, prices.usd_to_currency())):
        if model_name in table:
            return float(table[model_name]) * scale
        folded = model_name.casefold()
        for name, price in table.items():
            if name.casefold() == folded:
                return float(price) * scale
    return None
