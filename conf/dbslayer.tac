# twistd -ny conf/dbslayer.tac
#
# Settings come from the file named by DBSLAYER_CONFIG (see conf/dbslayer.toml) and from
# DBSLAYER_* environment variables, e.g.:
#   DBSLAYER_BACKENDS='mysql://app:secret@127.0.0.1:3306/shop?name=main' twistd -ny conf/dbslayer.tac
import os
import sys

from twisted.application.service import Application

from api.cli import warn_unknown_environment
from api.service import make_service
from conf.load import load_settings
from conf.settings import SettingError

try:
    settings = load_settings([], os.environ)
except SettingError as err:  # (one line and exit status 2, not twistd's traceback)
    print(f"dbslayer.tac: {err}", file=sys.stderr)
    raise SystemExit(2) from None
warn_unknown_environment(os.environ, settings, "dbslayer.tac")
application = Application("dbslayer")
make_service(settings).setServiceParent(application)
