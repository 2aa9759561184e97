#!/bin/sh
# Makes the security tests' certificates in directory $1 with openssl:
#   ca.pem/ca.key              the test CA
#   other_ca.pem               an unrelated CA (a client trusting it rejects the server)
#   server.pem/server.key      server, SANs localhost and 127.0.0.1
#   client.pem/client.key      client "alice" (SANs alice.example, a spiffe URI)
#   other_client.pem/.key      a client certificate from other_ca
#   expired.pem/expired.key    server for localhost whose validity ended a day ago
#   wronghost.pem/.key         server for other.example only
# One generator for the C++ and the Python tests; a second run overwrites.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -subj "$2" -days 30 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

leaf() {  # name subject ca days extensions...
  name=$1 subject=$2 issuer=$3 days=$4
  shift 4
  key "$name.key"
  openssl req -new -key "$name.key" -out "$name.csr" -subj "$subject"
  printf '%s\n' "$@" > "$name.ext"
  # -days -1 makes notAfter a day before notBefore (now): an expired
  # certificate without a faked clock (openssl 3.0 has no -not_before).
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial \
    -days "$days" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

ca ca "/CN=libchat test CA"
ca other_ca "/CN=unrelated test CA"
server_ext="extendedKeyUsage=serverAuth"
leaf server "/CN=localhost" ca 30 "subjectAltName=DNS:localhost,IP:127.0.0.1" "$server_ext"
leaf expired "/CN=localhost" ca -1 "subjectAltName=DNS:localhost,IP:127.0.0.1" "$server_ext"
leaf wronghost "/CN=other.example" ca 30 "subjectAltName=DNS:other.example" "$server_ext"
leaf client "/O=Example/CN=alice" ca 30 \
  "subjectAltName=DNS:alice.example,URI:spiffe://example.org/alice" "extendedKeyUsage=clientAuth"
leaf other_client "/CN=mallory" other_ca 30 "subjectAltName=DNS:mallory.example" \
  "extendedKeyUsage=clientAuth"
