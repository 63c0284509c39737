"""`refund-sink`: one parser, one dispatcher, one-line errors with a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import redis
import sqlalchemy.exc

from refund_sink import (
    export_commands,
    flag_commands,
    operations,
    processes,
    reconcile_commands,
    refund_commands,
    report_commands,
    retention_commands,
    send,
    shop_commands,
    spool_commands,
    state_folder,
)
from refund_sink.servers import ServerError
from refunds.db import describe
from refunds.settings import ConfigError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, naming the subcommand: `refund-sink: error: token create: ...`."""
        where = self.prog.removeprefix("refund-sink").strip()
        self.exit(2, f"refund-sink: error: {where + ': ' if where else ''}{message}\n")


def build_parser() -> Parser:
    parser = Parser(prog="refund-sink", description="Genstore refund webhook sink.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    processes.add_commands(commands)
    operations.add_commands(commands)
    send.add_command(commands)
    spool_commands.add_command(commands)
    refund_commands.add_command(commands)
    flag_commands.add_command(commands)
    export_commands.add_command(commands)
    report_commands.add_command(commands)
    retention_commands.add_command(commands)
    shop_commands.add_command(commands)
    reconcile_commands.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        if handler is not processes.run_embedded:  # `run` decides and records; others follow
            state_folder.use_recorded_addresses(os.environ)
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, ServerError, operations.CommandError, OSError) as error:
        return _fail(str(error))
    except sqlalchemy.exc.OperationalError as error:
        return _fail(f"database unreachable: {describe(error)}")
    except sqlalchemy.exc.SQLAlchemyError as error:
        return _fail(f"database error: {describe(error)}")
    except redis.RedisError as error:
        return _fail(f"broker unreachable: {describe(error)}")
    except Exception as error:  # a bug: still one line, never a traceback
        return _fail(f"unexpected {type(error).__name__}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or ["(no message)"])[0]


def _fail(message: str) -> int:
    print(f"refund-sink: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
