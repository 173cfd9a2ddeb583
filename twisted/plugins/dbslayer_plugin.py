"""twistd plugin: ``twistd -n dbslayer [the options of dbslayer serve]``."""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    """Hands the whole option list to the same parser as ``dbslayer serve``."""

    def parseOptions(self, options: Any = None) -> None:
        from api.cli import warn_unknown_environment
        from conf.load import SettingError, load_settings

        try:
            self.settings = load_settings(list(options or []), os.environ)
        except SettingError as e:
            raise usage.UsageError(str(e)) from None
        warn_unknown_environment(os.environ, self.settings, "twistd dbslayer")

    def __str__(self) -> str:
        from conf.load import build_parser

        return build_parser("twistd dbslayer").format_help()


@implementer(IServiceMaker, IPlugin)
class DBSlayerServiceMaker:
    tapname = "dbslayer"
    description = "DBSlayer-compatible JSON-over-HTTP gateway to MySQL/MariaDB"
    options = Options

    def makeService(self, options: Options) -> Any:
        from api.service import make_service

        return make_service(options.settings)


serviceMaker = DBSlayerServiceMaker()
