#!/usr/bin/env bash
# The Secret `cellbus` of overlays/dev, with new random passwords: the in-cluster Redis's
# (its administrator and one user per service) and PostgreSQL's, each service's Redis URL built
# from its own user's password, and the checkpoint secret. Nothing is written to disk but a
# temporary file of mode 0600, removed at exit. Run it once, before the first
# `kubectl apply -k deploy/kubernetes/overlays/dev`; again (after `kubectl -n cellbus delete
# secret cellbus`) only with fresh Redis and PostgreSQL volumes, whose passwords it would change.
#
# KUBECTL (default: kubectl) and NAMESPACE (default: cellbus) may be set.
set -euo pipefail

kubectl=${KUBECTL:-kubectl}
namespace=${NAMESPACE:-cellbus}

random() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }  # 48 hex digits

redis_password=$(random)
kernel=$(random)
web=$(random)
accounts=$(random)
postgres=$(random)
secret=$(random)

umask 077
file=$(mktemp)
trap 'rm -f "$file"' EXIT
cat > "$file" <<END
REDIS_PASSWORD=$redis_password
REDIS_KERNEL_PASSWORD=$kernel
REDIS_WEB_PASSWORD=$web
REDIS_ACCOUNTS_PASSWORD=$accounts
KERNEL_REDIS_URL=redis://kernel:$kernel@redis:6379/0
WEB_REDIS_URL=redis://web:$web@redis:6379/0
ACCOUNTS_REDIS_URL=redis://accounts:$accounts@redis:6379/0
POSTGRES_PASSWORD=$postgres
DATABASE_URL=postgresql://cellbus@postgres:5432/cellbus
PGPASSWORD=$postgres
CELLBUS_SECRET=$secret
END

"$kubectl" get namespace "$namespace" >/dev/null 2>&1 || "$kubectl" create namespace "$namespace"
"$kubectl" --namespace "$namespace" create secret generic cellbus --from-env-file="$file"
