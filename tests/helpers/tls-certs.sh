#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tls-certs.sh DIR [CN-PREFIX]: a CA and the certificates both engines take
# with --tls-x509 DIR, in QEMU's file names: ca-cert.pem, server-cert.pem
# and server-key.pem (the destination: CN=${prefix}dest, for the names
# localhost and 127.0.0.1), client-cert.pem and client-key.pem (the source:
# CN=${prefix}src). A second call with another DIR makes a CA of its own,
# which the first does not trust; a DIR that already holds ca-cert.pem and
# ca-key.pem keeps that CA (another CN-PREFIX: peers the CA vouches for but
# an authz list may not name).
set -eu
dir=${1:?usage: tls-certs.sh DIR [CN-PREFIX]}
prefix=${2:-}
mkdir -p "$dir"
cd "$dir"
key() { certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$1" 2>/dev/null; }
if [ ! -e ca-cert.pem ] || [ ! -e ca-key.pem ]; then
	key ca-key.pem
	cat >ca.tmpl <<T
cn = ${prefix}mig test CA
ca
cert_signing_key
expiration_days = 30
T
	certtool --generate-self-signed --load-privkey ca-key.pem --template ca.tmpl \
		--outfile ca-cert.pem 2>/dev/null
fi
for side in server client; do
	key "$side-key.pem"
	cn=${prefix}dest
	[ "$side" = server ] || cn=${prefix}src
	{
		echo "cn = $cn"
		echo "expiration_days = 30"
		echo "signing_key"
		echo "encryption_key"
		if [ "$side" = server ]; then
			echo "tls_www_server"
			echo "dns_name = localhost"
			echo "ip_address = 127.0.0.1"
		else
			echo "tls_www_client"
		fi
	} >"$side.tmpl"
	certtool --generate-certificate --load-privkey "$side-key.pem" \
		--load-ca-certificate ca-cert.pem --load-ca-privkey ca-key.pem \
		--template "$side.tmpl" --outfile "$side-cert.pem" 2>/dev/null
done
rm -f ./*.tmpl
chmod 600 ./*-key.pem
