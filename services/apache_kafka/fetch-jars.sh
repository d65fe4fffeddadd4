#!/usr/bin/env bash
# Fetch the pinned Apache Kafka broker jars (and their runtime dependencies) from Maven Central
# into a cache folder, once. Tests and benchmarks start the broker from these jars.
# Usage: services/apache_kafka/fetch-jars.sh [DEST]   (default: $GUMBEL_KAFKA_JARS or ~/.cache/gumbel-stream/kafka-<version>)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
dest=${1:-${GUMBEL_KAFKA_JARS:-$HOME/.cache/gumbel-stream/kafka-$version}}
# .complete holds the SHA-1 of the pom it was fetched for: a changed pom fetches what it adds.
stamp=$(sha1sum "$here/pom.xml" | cut -c1-40)
if [ -f "$dest/.complete" ] && [ "$(cat "$dest/.complete")" = "$stamp" ]; then
  echo "$dest"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch-jars: Maven (mvn) is needed to fetch the Kafka jars" >&2; exit 1; }
mkdir -p "$dest"
mvn -q -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest" >&2
echo "$stamp" > "$dest/.complete"
echo "$dest"
