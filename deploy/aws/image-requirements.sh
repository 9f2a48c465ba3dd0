#!/bin/sh
# The container image's pinned requirements, printed one per line: the runtime lock, plus boto3
# (the ECS launcher's AWS client) and its dependencies at the development lock's versions, which
# win where the two locks differ (botocore needs python-dateutil < 3). Install them with
# `pip install --no-deps --only-binary=:all:`, then `pip check`.
set -eu
root="${1:-.}"
aws='^(boto3|botocore|jmespath|python-dateutil|s3transfer|six|urllib3)=='
grep -E "$aws" "$root/requirements/dev.lock"
grep -E '^[A-Za-z0-9_.-]+(\[[a-z,]+\])?==' "$root/requirements/runtime.lock" | grep -Ev "$aws"
