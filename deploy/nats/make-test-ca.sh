#!/usr/bin/env bash
# make-test-ca.sh DIR — a local test CA and certificates for the 3-node
# cluster (deploy/nats/cluster/nodeN-tls.conf) and its clients, written into
# DIR (never commit it: .gitignore keeps *.key, *.nk and deploy/nats/tls/ out).
#
#   DIR/ca.pem                 the CA (clients: --nats-tls-ca DIR/ca.pem)
#   DIR/n1-cert.pem, n1-key.pem … n3   server certificates (routes and clients),
#                              for 127.0.0.1, localhost and n1..n3
#   DIR/<identity>-cert.pem, -key.pem  a client certificate per jetsaga identity
#                              (--nats-tls-cert, --nats-tls-key), CN = identity
#
# For tests and a laptop only: the CA key stays in DIR, valid 30 days.
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
days=30
umask 077

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
	-keyout ca.key -out ca.pem -subj "/CN=jetsaga test CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

cert() { # name san usage
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1-key.pem" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
	printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\n' "$2" "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
		-extfile "$1.ext" -out "$1-cert.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
for n in n1 n2 n3; do
	cert "$n" "DNS:$n,DNS:localhost,IP:127.0.0.1" "serverAuth,clientAuth"
done
for id in order inventory payment readmodel reader operator; do
	cert "$id" "DNS:$id" "clientAuth"
done
chmod 644 ca.pem ./*-cert.pem
echo "test CA and certificates in $dir"
