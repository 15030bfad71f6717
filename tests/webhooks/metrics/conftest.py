"""Reading /metrics in tests: in this process (the client's default registry) and as a scraper reads it."""

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "test-metrics-token-5f0c-0123456789abcdef"


def sample(name: str, **labels) -> float:
    """A sample of this process's counts (0 when the series does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """A scrape's samples: {(sample name, labels): value}."""
    return {
        (item.name, frozenset(item.labels.items())): item.value
        for family in text_string_to_metric_families(text)
        for item in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def exposed_names(text: str) -> set[str]:
    """Every sample name a scrape declares (from its TYPE lines), series or not: counters as `x_total`, histograms as
    `x_bucket`, `x_sum`, `x_count`."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    return {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture
def scrape(client, metrics_on):
    def scrape() -> str:
        response = client.get("/metrics", **metrics_on)
        assert response.status_code == 200, response.content
        return response.content.decode()

    return scrape
