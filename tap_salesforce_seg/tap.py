"""`tap-salesforce-seg`: Segment's Salesforce source as a Singer tap (singer-sdk).

- Settings (`config_jsonschema`, shown by `--about`, secrets flagged) are validated by
  `TapConfig.from_mapping` before anything touches the network; a bad one is one line on stderr naming
  the setting, exit status 1. Unknown settings are reported (with a "did you mean").
- `tap.tap_config` (the validated `TapConfig`) and `tap.client` (one shared, lazily logged-in
  `SalesforceClient`) are what the streams use.
- Streams: from discovery (`discovery.discover`) or, with `--catalog`, straight from the catalog's
  metadata (no describes; one describeGlobal checks that the selected streams exist in the org).
- CLI: any `TapError` ends the run with its one-line message on stderr and its `exit_code`
  (2 for `QuotaExceeded`). Singer messages go to stdout through a msgspec writer that flushes at each
  STATE message (not after every record).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import sys
import typing as t
from pathlib import PurePath

import click
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers.capabilities import EMIT_ACTIVATE_VERSION_CONFIG
from singer_sdk.plugin_base import SingerCommand
from singer_sdk.singerlib import Catalog, SingerMessageType

from tap_salesforce_seg.client import SalesforceClient
from tap_salesforce_seg.config import (
    API_TYPES,
    DEFAULT_API_VERSION,
    DEFAULT_BULK_JOB_TIMEOUT_SECONDS,
    DEFAULT_BULK_MIN_RECORDS,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_QUOTA_PERCENT,
    DEFAULT_STATE_EVERY_RECORDS,
    NAMINGS,
    TapConfig,
)
from tap_salesforce_seg.describe import describe_global
from tap_salesforce_seg.discovery import (
    StreamDefinition,
    check_catalog_shape,
    check_selected_against_org,
    definitions_from_catalog,
    discover,
    is_selected,
)
from tap_salesforce_seg.errors import CatalogError, ConfigError, OutputClosed, StateError, TapError
from tap_salesforce_seg.inputs import (
    ORG_STATE_KEY,
    check_state_shape,
    checked_json_file,
    read_catalog,
    read_config,
    read_json_object,
    read_state,
)
from tap_salesforce_seg.output import defer_while_writing, whole_write, write_all

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message
    from singer_sdk.streams import Stream

TAP_NAME = "tap-salesforce-seg"

SETTINGS = th.PropertiesList(
    th.Property(
        "username",
        th.StringType,
        title="Username",
        description="Salesforce username for the SOAP login (with password and security_token).",
    ),
    th.Property("password", th.StringType, secret=True, title="Password", description="The user's password."),
    th.Property(
        "security_token",
        th.StringType,
        secret=True,
        title="Security token",
        description="The user's security token (empty when the org trusts the caller's IP range).",
    ),
    th.Property(
        "client_id",
        th.StringType,
        title="Client ID",
        description="Connected app consumer key (OAuth refresh token or client credentials login).",
    ),
    th.Property(
        "client_secret", th.StringType, secret=True, title="Client secret", description="Consumer secret."
    ),
    th.Property(
        "refresh_token",
        th.StringType,
        secret=True,
        title="Refresh token",
        description="OAuth refresh token; without it, client_id + client_secret use client credentials.",
    ),
    th.Property(
        "refresh_token_file",
        th.StringType,
        title="Refresh token file",
        description=(
            "A file holding the OAuth refresh token instead of refresh_token; the tap saves there each "
            "new token Salesforce rotates."
        ),
    ),
    th.Property(
        "domain",
        th.StringType,
        title="Login domain",
        description=(
            "login (production, the default), test (sandbox), a My Domain host such as acme.my or "
            "acme--uat.sandbox.my, or a base URL such as https://acme.my.salesforce.com."
        ),
    ),
    th.Property(
        "is_sandbox", th.BooleanType, title="Sandbox", description="true is a shorthand for domain: test."
    ),
    th.Property(
        "api_version",
        th.StringType,
        default=DEFAULT_API_VERSION,
        title="API version",
        description='Salesforce API version, like "58.0" (Segment uses 58.0).',
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Sync records changed at or after this instant; empty syncs all history.",
    ),
    th.Property(
        "lookback_seconds",
        th.IntegerType,
        default=DEFAULT_LOOKBACK_SECONDS,
        title="Lookback (seconds)",
        description="Each incremental sync re-reads this far behind its bookmark (late commits).",
    ),
    th.Property(
        "api_type",
        th.StringType,
        default="auto",
        allowed_values=list(API_TYPES),
        title="API type",
        description="auto (Bulk API 2.0 for big objects, else REST), rest or bulk.",
    ),
    th.Property(
        "bulk_min_records",
        th.IntegerType,
        default=DEFAULT_BULK_MIN_RECORDS,
        title="Bulk threshold",
        description="In auto mode, objects with at least this many matching records use Bulk API 2.0.",
    ),
    th.Property(
        "bulk_job_timeout_seconds",
        th.IntegerType,
        default=DEFAULT_BULK_JOB_TIMEOUT_SECONDS,
        title="Bulk job timeout (seconds)",
        description="A Bulk API 2.0 job still unfinished after this long is aborted and its window read "
        "through REST; 0 waits without limit.",
    ),
    th.Property(
        "quota_percent",
        th.NumberType,
        default=DEFAULT_QUOTA_PERCENT,
        title="API quota (%)",
        description="Stop before the org's daily API use passes this percentage of its allowance.",
    ),
    th.Property(
        "state_every_records",
        th.IntegerType,
        default=DEFAULT_STATE_EVERY_RECORDS,
        title="State every N records",
        description="Emit a STATE message (bookmark) after this many records of a stream.",
    ),
    th.Property(
        "naming",
        th.StringType,
        default="segment",
        allowed_values=list(NAMINGS),
        title="Naming",
        description="segment: Segment's table and column names; salesforce: Salesforce's API names.",
    ),
)
OWN_SETTINGS = frozenset(SETTINGS.to_dict()["properties"])


class StateFlushingMsgSpecWriter(MsgSpecWriter):
    """msgspec-encoded Singer messages on stdout, flushed at each STATE (and at exit), not per record."""

    def write_message(self, message: Message) -> None:
        stdout = sys.stdout.buffer
        try:
            with whole_write():
                write_all(stdout, self.format_message(message))
                if message.type == SingerMessageType.STATE:
                    stdout.flush()
        except OSError as error:  # the reader is gone (EPIPE), or a file's disk is full (ENOSPC)
            raise OutputClosed(error) from None


# A write that failed for want of room or a device (stdout redirected to a file on a full disk).
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE})


# The unknown-bookmarks warning names this many streams, then counts the rest.
FOREIGN_BOOKMARKS_NAMED = 8


class _OneLineErrorsCommand(SingerCommand):
    """The singer-sdk command, with the tap's own errors as one line on stderr and their exit code."""

    def parse_args(self, context: click.Context, args: list[str]) -> list[str]:
        # `--discover` and `--about` run while the command line is parsed (eager options), before click
        # enters the context that closes the files it opened (`--state`, `--catalog`). An error there
        # left them open, and Python's "ResourceWarning: unclosed file" (shown under Meltano, which sets
        # PYTHONWARNINGS) was printed after the error line: the tap's last words named no cause.
        try:
            return super().parse_args(context, args)
        except BaseException:
            context.close()
            raise

    def main(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            try:
                return super().main(*args, **kwargs)
            except SystemExit as stop:
                # click ends a wrong command line (an unknown option, a --catalog file that does not
                # exist) with status 2, which in a pipeline reads as the quota stop (wait and rerun):
                # it is a mistake to fix, status 1 as every other one. Its message is already out.
                if stop.code == click.UsageError.exit_code:
                    sys.exit(1)
                raise
            except OSError as error:
                # The catalog or --about printed to a file on a full disk: the tap writes no other file.
                if error.errno not in _OUTPUT_ERRNOS:
                    raise
                raise OutputClosed(error) from None
        except TapError as error:
            if isinstance(error, OutputClosed):  # what is still buffered has nowhere to go
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            try:
                sys.stdout.flush()
            finally:
                self.logger.error("%s", error.message)
            sys.exit(error.exit_code)


class TapSalesforceSeg(Tap):
    """Segment's Salesforce source: 48 collections under Segment's names, plus custom objects."""

    name = TAP_NAME
    package_name = TAP_NAME
    dynamic_catalog = True  # validate settings before --discover too
    message_writer_class = StateFlushingMsgSpecWriter
    config_jsonschema = SETTINGS.to_dict()

    def __init__(
        self,
        *,
        config: dict | PurePath | str | list[PurePath | str] | None = None,
        catalog: PurePath | str | dict | Catalog | None = None,
        state: PurePath | str | dict | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_writer: t.Any = None,
    ) -> None:
        # Files named on the command line are read here, so that a missing or malformed one is one line.
        config, catalog, state = read_config(config), read_catalog(catalog), read_state(state)
        # singer-sdk's reading of a malformed catalog or state ends in a traceback.
        if isinstance(catalog, dict):
            check_catalog_shape(catalog)
        if state is not None:
            check_state_shape(state)
        # singer-sdk's Catalog keeps only the metadata keys it knows; ours (salesforce-object, ...) are
        # read from the raw catalog.
        self._raw_catalog = _raw_catalog(catalog)
        self._tap_config: TapConfig | None = None
        self._client: SalesforceClient | None = None
        super().__init__(
            config=config,
            catalog=catalog,
            state=state,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_writer=message_writer,
        )

    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        """SIGTERM/SIGINT: singer-sdk's stop (the tap's STATE, then exit), but never in the middle of
        a line being written to stdout (see output.py), and with the signal's exit status (128 + its
        number, as a shell reports it): singer-sdk exits 0, so `tap | target` under `pipefail`, or a
        scheduler that runs the tap alone, took a stopped sync for a finished one."""
        sdk_stop = super()._handle_termination
        # Said at once (a scheduler's log otherwise shows only that the tap ended); logging here is
        # safe: stderr is not the stdout whose line may be half written.
        self.logger.warning(
            "received signal %d: stopping after the line being written, with the state so far", signum
        )

        def stop() -> None:
            with contextlib.suppress(SystemExit):  # singer-sdk's sys.exit(0)
                sdk_stop(signum, frame)
            raise SystemExit(128 + signum)

        if not defer_while_writing(stop):
            stop()

    # --- settings -------------------------------------------------------------------------------

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        try:
            self._tap_config = TapConfig.from_mapping(self._config)
        except ConfigError as error:
            if raise_errors:
                raise
            self.logger.warning("%s", error.message)
            return [error.message]
        for key in sorted(set(self._config) - self._known_settings()):
            close = difflib.get_close_matches(key, sorted(self._known_settings()), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.logger.warning("Unknown setting '%s' is ignored%s.", key, hint)
        return self._validate_builtin_settings(raise_errors=raise_errors)

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """singer-sdk's built-in settings, plus `emit_activate_version_messages`: singer-sdk's streams
        read it (ACTIVATE_VERSION for streams synced in full) but its taps do not declare it, so it was
        called unknown while it worked, and `--about` hid the capability's only switch."""
        super().append_builtin_config(config_jsonschema)
        properties = config_jsonschema.setdefault("properties", {})
        for name, spec in EMIT_ACTIVATE_VERSION_CONFIG["properties"].items():
            properties.setdefault(name, spec)

    @classmethod
    def _known_settings(cls) -> set[str]:
        schema = dict(cls.config_jsonschema)
        cls.append_builtin_config(schema)
        return set(schema.get("properties", {}))

    def _validate_builtin_settings(self, *, raise_errors: bool) -> list[str]:
        """singer-sdk's own settings (stream_maps, flattening, batch_config) by their JSON schema."""
        from singer_sdk.plugin_base import JSONSchemaValidator

        schema = {"type": "object", "properties": {}}
        self.append_builtin_config(schema)
        builtins = {key: value for key, value in self._config.items() if key not in OWN_SETTINGS}
        errors = sorted(JSONSchemaValidator(schema).iter_errors(builtins), key=lambda e: list(e.path))
        messages = [
            f"{'.'.join(str(p) for p in error.path) or 'config'}: {error.message}" for error in errors
        ]
        if messages and raise_errors:
            raise ConfigError(messages[0])
        return messages

    @property
    def tap_config(self) -> TapConfig:
        if self._tap_config is None:
            self._tap_config = TapConfig.from_mapping(self._config)
        return self._tap_config

    @property
    def client(self) -> SalesforceClient:
        """The one client all streams share (logs in on first use)."""
        if self._client is None:
            self._client = SalesforceClient(self.tap_config, self.logger)
        return self._client

    # --- streams --------------------------------------------------------------------------------

    def discover_streams(self) -> list[Stream]:
        return [self._make_stream(definition) for definition in self.stream_definitions()]

    def stream_definitions(self) -> list[StreamDefinition]:
        """The streams' definitions: from the input catalog when there is one, else from discovery."""
        naming = self.tap_config.naming
        if self._raw_catalog is None:
            return discover(self.client, naming, self.logger)
        definitions = definitions_from_catalog(self._raw_catalog, naming)
        selected = {
            str(entry.get("tap_stream_id") or entry.get("stream"))
            for entry in self._raw_catalog.get("streams", [])
            if is_selected(entry.get("metadata") or [])
        }
        if selected:
            check_selected_against_org(definitions, selected, describe_global(self.client), naming)
        else:
            self.logger.warning(
                "No stream is selected in the catalog, so nothing is synced: select streams in it, or "
                "with Meltano's `select` (README: Choose objects and fields)."
            )
        return definitions

    def _make_stream(self, definition: StreamDefinition) -> Stream:
        from tap_salesforce_seg.streams import SalesforceStream

        return SalesforceStream(
            self,
            name=definition.name,
            schema=definition.schema,
            sobject=definition.sobject,
            fields=definition.fields,
            replication_key=definition.replication_key,
            selected_by_default=definition.selected_by_default,
        )

    def sync_all(self) -> None:
        self._check_org()
        self._check_stream_objects()
        self._report_unknown_bookmarks()
        self._report_deselected_bookmarks()
        super().sync_all()

    def load_state(self, state: dict[str, t.Any]) -> None:
        super().load_state(state)
        if ORG_STATE_KEY in state:  # singer-sdk keeps only the bookmarks
            self.state[ORG_STATE_KEY] = state[ORG_STATE_KEY]

    def _check_org(self) -> None:
        """Bookmarks are instants in one org's history: used for another org (a state file copied
        with a sync's folder, a Meltano state shared by two extractors, a sandbox refreshed since,
        which gets a new org id and its data anew), they skipped every record older than them. So the
        state keeps the org's id, and a state from another org stops the run before any output."""
        org = self.client.organization_id
        if org is None:
            return  # a session id of another shape: nothing to compare
        recorded = self.state.get(ORG_STATE_KEY)
        if recorded is not None and recorded != org and self.state.get("bookmarks"):
            raise StateError(
                f"state: its bookmarks were read from the Salesforce org {recorded}, and this login is "
                f"to the org {org}: another org's bookmarks would skip this org's records older than them. "
                "Nothing was synced. Give each org its own state and its own warehouse schema (README: "
                "Several orgs); for a sandbox refreshed since (it gets a new org id), sync it in full: run "
                "without the state"
            )
        self.state[ORG_STATE_KEY] = org
        # A STATE written before any stream has one (singer-sdk writes it once the state is not empty)
        # keeps the Singer shape readers expect.
        self.state.setdefault("bookmarks", {})

    def _check_stream_objects(self) -> None:
        """A stream whose state (and so table) belongs to another custom object still in the org: the
        catalog gave its name to an object added later that conforms alike (streams.py). Syncing would
        mix two objects in one table and skip the newcomer's older records, so stop before any output."""
        from tap_salesforce_seg.streams import OBJECT_STATE_KEY

        bookmarks = self.state.get("bookmarks", {})
        clashes = []
        for name, stream in self.streams.items():
            recorded = (bookmarks.get(name) or {}).get(OBJECT_STATE_KEY)
            sobject = getattr(stream, "sobject", None)
            if stream.selected and recorded is not None and recorded != sobject:
                clashes.append((name, sobject, str(recorded)))
        if not clashes:
            return
        in_org = {str(item.get("name")) for item in describe_global(self.client)}
        for name, sobject, recorded in clashes:
            if recorded not in in_org:
                continue  # renamed or deleted in Salesforce: the stream warns and goes on
            elsewhere = [n for n, s in self.streams.items() if getattr(s, "sobject", None) == recorded]
            now = f" (the catalog names it '{elsewhere[0]}')" if elsewhere else ""
            raise TapError(
                f"stream '{name}': its table and bookmark hold the object {recorded}{now}, and the catalog "
                f"now gives the name to {sobject}: both conform to it, and discovery gives a contested "
                "name to the object spelled like it. Nothing was synced. To keep the table with "
                f"{recorded}, give the two streams their former names in the catalog (`tap_stream_id` and "
                f"`stream`); to give it to {sobject}, drop or rename the table and the bookmark "
                f"(jq 'del(.bookmarks.{name})') (README: Collisions)."
            )

    def _report_deselected_bookmarks(self) -> None:
        """Streams synced before (they have bookmarks) that the catalog no longer selects: their tables
        stop changing. Often meant; but a catalog made by discovery again (without the selection applied
        again) does it to every stream chosen by hand, and nothing else would say so."""
        bookmarks = self.state.get("bookmarks", {})
        idle = sorted(
            name for name, stream in self.streams.items() if name in bookmarks and not stream.selected
        )
        if not idle:
            return
        shown = idle[:FOREIGN_BOOKMARKS_NAMED] + (
            [f"and {len(idle) - FOREIGN_BOOKMARKS_NAMED} more"] if len(idle) > FOREIGN_BOOKMARKS_NAMED else []
        )
        self.logger.warning(
            "state: %d stream(s) synced before are not selected in the catalog, so their tables are not "
            "updated: %s. A catalog made by --discover again selects the defaults: apply your selection "
            "again (README: Choose objects and fields); if a stream is no longer wanted, drop its bookmark: "
            "jq 'del(.bookmarks.NAME)'.",
            len(idle),
            ", ".join(shown),
        )

    def _report_unknown_bookmarks(self) -> None:
        """Bookmarks under names that are no stream of the catalog are not used, so the streams they
        were meant for sync in full: say so, as a state written under the other `naming`, by another tap
        or with a typo would otherwise pass unnoticed."""
        streams = sorted(self.streams)
        unknown = sorted(str(name) for name in self.state.get("bookmarks", {}) if name not in self.streams)
        if not unknown:
            return
        shown = []
        for name in unknown[:FOREIGN_BOOKMARKS_NAMED]:
            close = difflib.get_close_matches(name, streams, n=1)
            shown.append(f"{name} (did you mean '{close[0]}'?)" if close else name)
        if len(unknown) > FOREIGN_BOOKMARKS_NAMED:
            shown.append(f"and {len(unknown) - FOREIGN_BOOKMARKS_NAMED} more")
        self.logger.warning(
            "state: bookmarks for %d stream(s) the catalog does not have are not used (and kept in the "
            "state): %s. A stream without a bookmark of its own syncs in full (is the state from another "
            "tap, written under the other `naming`, or edited?). A bookmark of a stream no longer wanted "
            "(its object deleted in Salesforce, say) can be dropped: jq 'del(.bookmarks.NAME)'.",
            len(unknown),
            ", ".join(shown),
        )

    # --- CLI ------------------------------------------------------------------------------------

    @classmethod
    def invoke(  # type: ignore[override]
        cls, *, state: t.IO[str] | None = None, catalog: t.IO[str] | None = None, **options: t.Any
    ) -> None:
        """singer-sdk's, with ``--state`` and ``--catalog`` files that are not JSON objects as one line."""
        state = checked_json_file(state, "state file", StateError)
        catalog = checked_json_file(catalog, "catalog file", CatalogError)
        super().invoke(state=state, catalog=catalog, **options)

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.__class__ = _OneLineErrorsCommand
        for param in command.params:
            if param.name == "config" and param.callback is not None:
                param.callback = _config_files_read_first(param.callback)
        return command


def _config_files_read_first(callback: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """``--config``'s callback, run once every file it names has been read as a JSON object here: a
    missing or malformed one is then one line, not singer-sdk's traceback."""

    def read_then_call(context: click.Context, param: click.Parameter, value: t.Any) -> t.Any:
        for path in value or ():
            if path != "ENV":  # singer-sdk's word for "settings from the environment"
                read_json_object(path, "config file")
        return callback(context, param, value)

    return read_then_call


def _raw_catalog(catalog: dict | Catalog | None) -> dict | None:
    if isinstance(catalog, Catalog):
        return catalog.to_dict()
    return catalog


if __name__ == "__main__":
    TapSalesforceSeg.cli()
