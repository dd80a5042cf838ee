#!/bin/sh
# SPDX-License-Identifier: MIT
# Retry the recovery of a paused postcopy migration until it runs again.
# mig-recover is idempotent: when the migration already runs (or has
# completed) it does nothing and exits 0, so it is safe every minute:
#
#   # on the source host (crontab -e)
#   * * * * *  /usr/local/share/mig/cron-recover.sh myvm --to tcp:dst-host:4444
#   # on the destination host
#   * * * * *  /usr/local/share/mig/cron-recover.sh myvm --listen tcp:0.0.0.0:4444
#
# Arguments are passed to mig-recover (a NAME or --bus PATH, then --to URI
# or --listen URI, optionally --timeout SECS). Exit statuses are mig-recover's:
# 0 running again or completed; 75 still paused (cron tries again next minute);
# 69 no such migration here (finished or never started); 1 or 64 errors.
mig-recover --timeout 50 "$@"
rc=$?
case $rc in
0)  logger -t mig-recover "migration $*: running" 2>/dev/null ;;
75) logger -t mig-recover "migration $*: still paused, will retry" 2>/dev/null ;;
69) ;;
*)  logger -t mig-recover "migration $*: mig-recover failed ($rc)" 2>/dev/null ;;
esac
exit $rc
