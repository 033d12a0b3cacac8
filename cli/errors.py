"""One line per error, for every ``icm`` command.

click reports a usage error (an unknown option, a missing argument, a bad choice or
number) as a usage block of four lines; icm's own errors are one line on stderr,
``icm: error: <message>``, and scripts (and people) read one format. :class:`IcmGroup`
turns every ``click.ClickException`` raised while parsing or running a command into
that one line, with exit status 2, in one place instead of per option. ``--help``,
``--version`` and ``icm`` alone (the help) are not errors and print what click prints.
"""
from __future__ import annotations

import click
from click.exceptions import NoArgsIsHelpError

EXIT_USAGE = 2


def command_name(ctx: click.Context | None) -> str:
    """``icm encode`` for an error inside ``encode``, whatever name the program was run by
    (``icm``, ``python -m cli.main``, a test runner)."""
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["icm", *reversed(names[:-1])])


class OneLineError(click.ClickException):
    """A click error, shown as ``icm: error: <message> (see 'icm <cmd> --help')``."""

    exit_code = EXIT_USAGE

    def __init__(self, cause: click.ClickException):
        msg = " ".join(cause.format_message().split()).rstrip(".")  # one line, whatever click wrapped
        if msg[:1].isupper() and msg[1:2].islower():  # "No such option" -> "no such option", not "CUDA"
            msg = msg[0].lower() + msg[1:]
        ctx = getattr(cause, "ctx", None)
        if isinstance(cause, click.UsageError) and ctx is not None:
            msg += f" (see '{command_name(ctx)} --help')"
        super().__init__(msg)

    def show(self, file=None) -> None:
        click.echo(f"icm: error: {self.message}", err=True)


def _one_line(e: click.ClickException) -> click.ClickException:
    return e if isinstance(e, (OneLineError, NoArgsIsHelpError)) else OneLineError(e)


class IcmGroup(click.Group):
    """The ``icm`` group: parsing errors of the group and of every command, and click
    errors a command raises, become :class:`OneLineError`. click's own handler then
    prints the one line and exits 2; help, ``--version`` and interrupts are untouched."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as e:
            raise _one_line(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            raise _one_line(e) from None
