# twistd -ny conf/dbslayer.tac
#
# Settings come from the file named by DBSLAYER_CONFIG (see conf/dbslayer.toml) and from
# DBSLAYER_* environment variables, e.g.:
#   DBSLAYER_BACKENDS='mysql://app:secret@127.0.0.1:3306/shop?name=main' twistd -ny conf/dbslayer.tac
import os

from twisted.application.service import Application

from api.service import make_service
from conf.load import load_settings

application = Application("dbslayer")
make_service(load_settings([], os.environ)).setServiceParent(application)
