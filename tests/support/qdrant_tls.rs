//! A throw-away certificate authority and a server certificate for 127.0.0.1, so the
//! Qdrant stand-in can serve gRPC over TLS in tests. Test material only, trusted by nothing
//! but these tests (a client trusts the CA through `SSL_CERT_FILE`). Made with:
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
//!   -out ca.pem -days 36500 -subj "/CN=lore test stand-in CA" \
//!   -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
//! openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key \
//!   -out leaf.csr -subj "/CN=127.0.0.1"
//! openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
//!   -days 36500 -extfile leaf.ext   # CA:FALSE, serverAuth, SAN IP:127.0.0.1, DNS:localhost
//! openssl pkcs8 -topk8 -nocrypt -in leaf.key -out leaf.pk8.pem
//! ```

#![allow(dead_code)]

/// The CA a client must trust.
pub const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBpjCCAU2gAwIBAgIUMv3iIv+9FaEDu2GQY4ZnoIdunr8wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVbG9yZSB0ZXN0IHN0YW5kLWluIENBMCAXDTI2MTIwMjE0MzAy
MloYDzIxMjYxMTA4MTQzMDIyWjAgMR4wHAYDVQQDDBVsb3JlIHRlc3Qgc3RhbmQt
aW4gQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAS8eVNxlPYpE9BPzOukVAWq
p49kQ6DbbXyxTn0CRNemMPhnWYnT+OdZWgx4NXctAl5TPzwvCuIu+phDymI0ILzK
o2MwYTAdBgNVHQ4EFgQUzqCfRseD2OS4hi0s10fCZOq+kZowHwYDVR0jBBgwFoAU
zqCfRseD2OS4hi0s10fCZOq+kZowDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAQYwCgYIKoZIzj0EAwIDRwAwRAIgLrRtiprZgpoC2lhymaorq6GJBcVcGOyU
NKdoR/XkHi0CIAKy4Wv694TJGIFFbVaCglZb3jcGl8LXxiw61g5XSdH8
-----END CERTIFICATE-----
";

/// The stand-in's certificate (signed by the CA), for 127.0.0.1 and localhost.
pub const SERVER_CERT_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBxjCCAWugAwIBAgIUMem6z/jb+m+SaJasopBEL9Lpp/4wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVbG9yZSB0ZXN0IHN0YW5kLWluIENBMCAXDTI2MTIwMjE0MzAy
MloYDzIxMjYxMTA4MTQzMDIyWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAR+Z/zJINOnMcGedNdtq/Y4dFGKVp76+HYiwVmc
3goy/IZqQ6Zp5sx079aSzOqWmlebSwjgWdZSRH48RRKcyeK9o4GMMIGJMAkGA1Ud
EwQCMAAwCwYDVR0PBAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMBMBoGA1UdEQQT
MBGHBH8AAAGCCWxvY2FsaG9zdDAdBgNVHQ4EFgQUtN/65JEBOKl0cFO7LVK5DuQ0
+0cwHwYDVR0jBBgwFoAUzqCfRseD2OS4hi0s10fCZOq+kZowCgYIKoZIzj0EAwID
SQAwRgIhAKyQYb58w4apZOK9/ZyAoA5Dc5MISN2IjQw+kjVfU1JVAiEAlGyuwH47
hGhd6T41i6gRsRX+P0pZ/6whyiOtqvtkHYY=
-----END CERTIFICATE-----
";

/// The stand-in's private key (PKCS#8).
pub const SERVER_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGQFi031+UxQzf2un
qxtTm2fHA+xOUeEA6sdN5+33lBKhRANCAAR+Z/zJINOnMcGedNdtq/Y4dFGKVp76
+HYiwVmc3goy/IZqQ6Zp5sx079aSzOqWmlebSwjgWdZSRH48RRKcyeK9
-----END PRIVATE KEY-----
";
