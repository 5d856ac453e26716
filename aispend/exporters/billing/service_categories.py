"""Azure Cost Management ServiceName -> FOCUS ServiceCategory.

The Query API has no ServiceCategory dimension, so the Azure source labels each
service with the category Microsoft's FOCUS export gives it, for the services an AI
platform usually runs on. Unknown services are `Other`; `sources.azure_cost.
service_categories` adds or overrides entries.
"""

from __future__ import annotations

from collections.abc import Mapping

OTHER = "Other"

_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "AI and Machine Learning": (
        "Azure OpenAI",
        "Azure OpenAI Service",
        "Cognitive Services",
        "Azure AI services",
        "Foundry Models",
        "Foundry Tools",
        "Azure Machine Learning",
        "Machine Learning",
        "Azure Cognitive Search",
        "Azure AI Search",
    ),
    "Compute": (
        "Virtual Machines",
        "Virtual Machines Licenses",
        "Azure Kubernetes Service",
        "Container Instances",
        "Azure Container Apps",
        "Functions",
        "Azure App Service",
        "Batch",
        "Cloud Services",
    ),
    "Storage": ("Storage", "Backup", "Azure NetApp Files"),
    "Databases": (
        "SQL Database",
        "Azure Cosmos DB",
        "Azure Database for PostgreSQL",
        "Azure Database for MySQL",
        "Redis Cache",
    ),
    "Networking": (
        "Bandwidth",
        "Virtual Network",
        "Load Balancer",
        "Application Gateway",
        "VPN Gateway",
        "Azure DNS",
        "Azure Front Door Service",
        "Content Delivery Network",
        "Network Watcher",
        "Azure Firewall",
    ),
    "Management and Governance": ("Azure Monitor", "Log Analytics", "Insight and Analytics"),
    "Security": ("Key Vault", "Microsoft Defender for Cloud", "Sentinel"),
    "Integration": ("API Management", "Service Bus", "Event Grid", "Event Hubs", "Logic Apps"),
    "Analytics": ("Azure Databricks", "Azure Synapse Analytics", "Microsoft Fabric"),
}

BUILTIN: dict[str, str] = {
    service: category for category, services in _BY_CATEGORY.items() for service in services
}


def category_of(service: str, overrides: Mapping[str, str] | None = None) -> str:
    if overrides and service in overrides:
        return overrides[service]
    return BUILTIN.get(service, OTHER)
