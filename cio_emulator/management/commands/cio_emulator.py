"""`manage.py cio_emulator`: serve the Customer.io emulator in the foreground (for `make run` and manual trials)."""

import json
import signal

from django.core.management.base import BaseCommand, CommandError

from cio_emulator import EmulatorInputError, EmulatorServer, read_fixture


class Command(BaseCommand):
    help = "Serve the Customer.io emulator (App API and Track API) until interrupted."
    # The emulator touches neither the database nor the other apps: skipping the checks starts it faster.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one")
        parser.add_argument("--fixture", help="JSON file of segments and customers to start with")
        parser.add_argument("--rate-limit", type=int, default=10, help="App API requests per second; 0 disables")
        parser.add_argument("--latency-ms", type=float, default=0, help="delay before every API answer")
        parser.add_argument("--app-api-key", default="emulator-app-key")
        parser.add_argument("--site-id", default="emulator-site")
        parser.add_argument("--track-api-key", default="emulator-track-key")
        parser.add_argument("--no-retry-after", action="store_true", help="answer 429 without a Retry-After header")

    def handle(self, *args, **options):
        server = self._build_server(options)
        try:
            server.start()
        except OSError as error:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {error}") from error
        # Whoever started this process reads this line to learn the port; it must not wait in a buffer.
        self.stdout.write(f"listening on {server.url}")
        self.stdout.flush()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: server.request_stop())
        server.serve_forever()

    def _build_server(self, options) -> EmulatorServer:
        fixture = None
        if options["fixture"]:
            try:
                fixture = read_fixture(options["fixture"])
            except (OSError, json.JSONDecodeError) as error:
                raise CommandError(f"cannot read fixture {options['fixture']}: {error}") from error
        try:
            return EmulatorServer(
                host=options["host"],
                port=options["port"],
                fixture=fixture,
                rate_limit=options["rate_limit"],
                latency_ms=options["latency_ms"],
                app_api_key=options["app_api_key"],
                site_id=options["site_id"],
                track_api_key=options["track_api_key"],
                retry_after_header=not options["no_retry_after"],
            )
        except EmulatorInputError as error:
            raise CommandError(f"invalid emulator option or fixture: {error}") from error
