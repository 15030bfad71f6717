"""WEBHOOK_ALLOWED_NETWORKS: where journey webhooks may come from, read once when the settings load.

Customer.io cannot sign a journey's webhook; it publishes the addresses its webhooks leave from and recommends
accepting them only from there. The setting is a comma-separated list of networks (`203.0.113.0/24`, a single
address, IPv6 too) and of the presets below, which stand for those published addresses. Empty: any address (the
site's behaviour before the setting existed). A value that is neither a network nor a preset stops the site at start
with a sentence, as the other settings do: a typo must not quietly open, or shut, the webhook.

Pure Python, no Django import: settings.py calls it while Django is not set up yet.
"""

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Customer.io's published addresses for its webhooks (journey "Send and receive data" actions and reporting
# webhooks) and custom SMTP, per region. Published at https://docs.customer.io/accounts-and-workspaces/ip-addresses
# ("Email (Custom SMTP) and Webhook IP Addresses"), repeated on https://docs.customer.io/journeys/webhooks-action and
# https://docs.customer.io/journeys/webhooks; the App API answers the US list at GET /v1/info/ip_addresses. The pages
# were not all alike when read (2026-12): the IP addresses page adds 35.192.215.166 and 34.170.204.100 to the US
# list, and the reporting webhooks page (https://docs.customer.io/integrations/data-out/connections/webhooks/) adds
# 136.111.237.157 and 34.10.127.179. Every address any of them names for a region is here, so that no genuine
# webhook is refused; Customer.io may add more: check those pages when upgrading, or list extra networks beside the
# preset in the setting.
CUSTOMERIO_US = (
    "35.188.196.183",
    "104.198.177.219",
    "104.154.232.87",
    "130.211.229.195",
    "104.198.221.24",
    "104.197.27.15",
    "35.194.9.154",
    "104.154.144.51",
    "104.197.210.12",
    "35.225.6.73",
    "35.192.215.166",
    "34.170.204.100",
    "136.111.237.157",
    "34.10.127.179",
)
CUSTOMERIO_EU = (
    "34.76.143.229",
    "34.78.91.47",
    "34.77.94.252",
    "35.187.188.242",
    "34.78.122.90",
    "35.195.137.235",
    "130.211.108.156",
    "104.199.50.18",
    "34.78.44.80",
    "35.205.31.154",
)
PRESETS = {"customerio-us": CUSTOMERIO_US, "customerio-eu": CUSTOMERIO_EU}


@dataclass(frozen=True)
class AllowedNetworks:
    """The parsed setting: the entries as written (for the admin's settings page) and the networks they stand for.
    False when empty, which means any address."""

    entries: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, address: str | None) -> bool:
        """Whether a client address (webhooks.intake.client_address.client_ip's) is inside one of the networks; any
        address when the setting is empty. No usable address is never inside."""
        if not self.networks:
            return True
        try:
            parsed = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if parsed.version == 6 and parsed.ipv4_mapped:
            parsed = parsed.ipv4_mapped  # ::ffff:203.0.113.9 from a dual-stack listener is 203.0.113.9
        return any(parsed in network for network in self.networks if network.version == parsed.version)

    def describe(self) -> str:
        """One line for the admin: which entries, and how many addresses the presets stand for."""
        parts = [f"{entry} ({len(PRESETS[entry])} addresses)" if entry in PRESETS else entry for entry in self.entries]
        return ", ".join(parts)


def parse(text: str, setting: str = "WEBHOOK_ALLOWED_NETWORKS") -> AllowedNetworks:
    """The networks of a comma-separated setting; SystemExit naming the entry that is neither a network nor a
    preset."""
    entries, networks = [], []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        preset = PRESETS.get(entry.lower())
        if preset is not None:
            entries.append(entry.lower())
            networks.extend(ipaddress.ip_network(address) for address in preset)
            continue
        try:
            # strict=False: 203.0.113.7/24 means the /24 it sits in, as an operator writing it means.
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SystemExit(
                f"{setting}: {entry!r} is neither a network (203.0.113.0/24, 2001:db8::/32, a single address) nor "
                f"one of the presets {', '.join(PRESETS)}."
            ) from None
        entries.append(entry)
    return AllowedNetworks(tuple(entries), tuple(dict.fromkeys(networks)))
