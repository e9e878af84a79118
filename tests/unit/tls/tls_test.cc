// server/tls: contexts from real certificate files (made by the openssl command), handshakes
// between real TLS streams over loopback sockets, and the rules etcd applies: client
// certificates from the CA only, the allowed CN, the CRL, Go's cipher suite names, auto TLS,
// files renewed while running.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "server/tls/stream.h"
#include "server/tls/tls_config.h"

namespace kvd::server::tls {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

void sh(const std::string& cmd) {
  ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
}

// A CA, a second CA, and leaves: server (127.0.0.1), alice and bob (clients of the CA), mallory
// (a client of the other CA), revoked (a client of the CA listed in crl.pem).
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("kvd-tls-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    const std::string& d = *dir_;
    for (const char* ca : {"ca", "other"}) {
      sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=" +
         std::string(ca) + " -keyout " + d + "/" + ca + "-key.pem -out " + d + "/" + ca + ".pem");
    }
    std::ofstream(d + "/leaf.ext") << "subjectAltName=IP:127.0.0.1\n"
                                      "extendedKeyUsage=serverAuth,clientAuth\n";
    auto leaf = [&](const std::string& name, const std::string& ca) {
      sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + name +
         " -keyout " + d + "/" + name + "-key.pem -out " + d + "/" + name + ".csr");
      sh("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/" + ca + ".pem -CAkey " +
         d + "/" + ca + "-key.pem -CAcreateserial -days 30 -extfile " + d + "/leaf.ext -out " + d +
         "/" + name + ".pem");
    };
    leaf("server", "ca");
    leaf("alice", "ca");
    leaf("bob", "ca");
    leaf("mallory", "other");
    leaf("revoked", "ca");
    // A CRL listing `revoked`, through openssl ca's database.
    std::ofstream(d + "/index.txt").close();
    std::ofstream(d + "/crlnumber") << "01\n";
    std::ofstream(d + "/ca.cnf") << "[ca]\ndefault_ca=c\n[c]\ndatabase=" << d
                                 << "/index.txt\ncrlnumber=" << d
                                 << "/crlnumber\ndefault_md=sha256\ndefault_crl_days=30\n";
    sh("openssl ca -config " + d + "/ca.cnf -cert " + d + "/ca.pem -keyfile " + d +
       "/ca-key.pem -revoke " + d + "/revoked.pem");
    sh("openssl ca -config " + d + "/ca.cnf -cert " + d + "/ca.pem -keyfile " + d +
       "/ca-key.pem -gencrl -out " + d + "/crl.pem");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static std::string f(const std::string& name) { return *dir_ + "/" + name; }

  static TlsInfo server_info() {
    TlsInfo i;
    i.cert_file = f("server.pem");
    i.key_file = f("server-key.pem");
    i.trusted_ca_file = f("ca.pem");
    i.client_cert_auth = true;
    return i;
  }
  static TlsInfo client_info(const std::string& who) {
    TlsInfo i;
    if (!who.empty()) {
      i.cert_file = f(who + ".pem");
      i.key_file = f(who + "-key.pem");
    }
    i.trusted_ca_file = f("ca.pem");
    return i;
  }

  struct Outcome {
    bool ok = false;
    std::string server_error;  // describe_handshake_error on the server side
    std::string common_name;   // what the server saw
  };

  // One handshake over loopback between a server made from `server` and a client from `client`.
  static Outcome handshake(TlsContexts& server, TlsContexts& client) {
    asio::io_context io;
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    Stream s(io), c(io);
    boost::system::error_code server_ec = asio::error::would_block, client_ec = asio::error::would_block;
    acc.async_accept(s.socket(), [&](boost::system::error_code ec) {
      if (ec) return void(server_ec = ec);
      s.use_tls(server.server());
      s.async_handshake(asio::ssl::stream_base::server, [&](boost::system::error_code ec) {
        server_ec = ec;
        if (ec) {
          boost::system::error_code ignored;
          s.close(ignored);  // the client learns of the refusal
        }
      });
    });
    c.socket().async_connect(acc.local_endpoint(), [&](boost::system::error_code ec) {
      if (ec) return void(client_ec = ec);
      c.use_tls(client.client());
      client.prepare_client(c.native_ssl(), "127.0.0.1");
      c.async_handshake(asio::ssl::stream_base::client,
                        [&](boost::system::error_code ec) { client_ec = ec; });
    });
    io.run_for(std::chrono::seconds(10));
    Outcome out;
    out.ok = !server_ec && !client_ec;
    if (server_ec) out.server_error = describe_handshake_error(s.native_ssl(), server_ec);
    if (!server_ec) out.common_name = TlsContexts::verified_peer_common_name(s.native_ssl());
    return out;
  }

  static std::shared_ptr<TlsContexts> make(TlsInfo info) {
    auto r = TlsContexts::create(std::move(info));
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r.is_ok() ? r.value() : nullptr;
  }

  // Connects `c` to `s` over loopback and runs both handshakes on `io`: `s` the server, `c` a
  // client presenting alice's certificate. The contexts stay alive with the fixture.
  void handshake_pair(asio::io_context& io, Stream& s, Stream& c) {
    pair_server_ = make(server_info());
    pair_client_ = make(client_info("alice"));
    ASSERT_TRUE(pair_server_ && pair_client_);
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    boost::system::error_code server_ec = asio::error::would_block, client_ec = asio::error::would_block;
    acc.async_accept(s.socket(), [&](boost::system::error_code ec) {
      ASSERT_FALSE(ec);
      s.use_tls(pair_server_->server());
      s.async_handshake(asio::ssl::stream_base::server, [&](boost::system::error_code ec) { server_ec = ec; });
    });
    c.socket().connect(acc.local_endpoint());
    c.use_tls(pair_client_->client());
    pair_client_->prepare_client(c.native_ssl(), "127.0.0.1");
    c.async_handshake(asio::ssl::stream_base::client, [&](boost::system::error_code ec) { client_ec = ec; });
    io.run_for(std::chrono::seconds(10));
    ASSERT_FALSE(server_ec) << server_ec.message();
    ASSERT_FALSE(client_ec) << client_ec.message();
  }

  std::shared_ptr<TlsContexts> pair_server_, pair_client_;

  static std::string* dir_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, handshake_trustedClientIsSeenByItsCommonName) {
  auto server = make(server_info());
  auto client = make(client_info("alice"));
  auto out = handshake(*server, *client);
  EXPECT_TRUE(out.ok) << out.server_error;
  EXPECT_EQ(out.common_name, "alice");
}

TEST_F(TlsTest, handshake_refusesNoCertificateAndOtherCaAsEtcd) {
  auto server = make(server_info());
  auto none = make(client_info(""));
  EXPECT_FALSE(handshake(*server, *none).ok);
  auto mallory = make(client_info("mallory"));
  auto out = handshake(*server, *mallory);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.server_error.find("unable to get local issuer certificate"), std::string::npos)
      << out.server_error;
}

TEST_F(TlsTest, handshake_caFileAloneRequiresAClientCertificate) {
  TlsInfo i = server_info();
  i.client_cert_auth = false;  // etcd: --trusted-ca-file alone already asks for one
  auto server = make(i);
  auto none = make(client_info(""));
  EXPECT_FALSE(handshake(*server, *none).ok);
}

TEST_F(TlsTest, handshake_withoutClientAuthTakesAnyClientAndSeesNoName) {
  TlsInfo i = server_info();
  i.client_cert_auth = false;
  i.trusted_ca_file.clear();
  auto server = make(i);
  auto alice = make(client_info("alice"));
  auto out = handshake(*server, *alice);
  EXPECT_TRUE(out.ok) << out.server_error;
  EXPECT_EQ(out.common_name, "");  // not asked for, not verified: no user
}

TEST_F(TlsTest, handshake_allowedCnOnBothEnds) {
  TlsInfo i = server_info();
  i.allowed_cn = "alice";
  auto server = make(i);
  EXPECT_TRUE(handshake(*server, *make(client_info("alice"))).ok);
  auto out = handshake(*server, *make(client_info("bob")));
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.server_error.find("common name not allowed"), std::string::npos) << out.server_error;
  // A client with an allowed CN checks the server's certificate too (CN "server").
  TlsInfo c = client_info("alice");
  c.allowed_cn = "alice";
  EXPECT_FALSE(handshake(*make(server_info()), *make(c)).ok);
}

TEST_F(TlsTest, handshake_crlRefusesTheRevokedSerial) {
  TlsInfo i = server_info();
  i.crl_file = f("crl.pem");
  auto server = make(i);
  EXPECT_TRUE(handshake(*server, *make(client_info("alice"))).ok);
  auto out = handshake(*server, *make(client_info("revoked")));
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.server_error.find("revoked"), std::string::npos) << out.server_error;
}

TEST_F(TlsTest, create_badFilesNameTheFile) {
  TlsInfo i = server_info();
  i.cert_file = f("missing.pem");
  auto r = TlsContexts::create(i);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "open " + f("missing.pem") + ": no such file or directory");
  i = server_info();
  i.cert_file = f("leaf.ext");  // not PEM
  r = TlsContexts::create(i);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("failed to find any PEM data in certificate input"), std::string::npos);
  EXPECT_NE(r.status().message().find(f("leaf.ext")), std::string::npos);
  i = server_info();
  i.key_file = f("alice-key.pem");
  r = TlsContexts::create(i);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("private key does not match public key"), std::string::npos);
  i = server_info();
  i.trusted_ca_file = f("leaf.ext");
  r = TlsContexts::create(i);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(f("leaf.ext")), std::string::npos);
  i = server_info();
  i.allowed_cn = "a";
  i.allowed_hostname = "b";
  EXPECT_FALSE(TlsContexts::create(i).is_ok());
}

TEST_F(TlsTest, goCipherSuites_namesAsEtcdAcceptsThem) {
  bool only13 = true;
  auto r = go_cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256", &only13);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value(), std::vector<std::string>{"ECDHE-RSA-AES128-GCM-SHA256"});
  EXPECT_FALSE(only13);
  r = go_cipher_suites("TLS_AES_256_GCM_SHA384", &only13);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(only13);
  r = go_cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_X", &only13);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "unexpected TLS cipher suite \" TLS_X\"");
  r = go_cipher_suites("", &only13);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r.value().empty());
}

TEST_F(TlsTest, selfCert_madeOnceKeyPrivateAndUsable) {
  std::string d = f("auto/fixtures/client");
  auto r = self_cert(d, {"127.0.0.1", "localhost"});
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  struct stat st {};
  ASSERT_EQ(::stat(r.value().key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(d.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::ifstream in(r.value().cert_file);
  std::string before((std::istreambuf_iterator<char>(in)), {});
  auto again = self_cert(d, {"127.0.0.1"});
  ASSERT_TRUE(again.is_ok());
  std::ifstream in2(again.value().cert_file);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in2)), {}), before);
  // A client of a self-certified server does not verify it.
  auto server = make(r.value());
  TlsInfo c;
  c.self_cert = true;
  EXPECT_TRUE(handshake(*server, *make(c)).ok);
  EXPECT_FALSE(handshake(*server, *make(client_info(""))).ok);  // verifying: unknown issuer
}

TEST_F(TlsTest, renewal_newFilesForNewContextsBrokenOnesKeepThePrevious) {
  std::string d = f("renew");
  fs::create_directories(d);
  fs::copy_file(f("server.pem"), d + "/cert.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(f("server-key.pem"), d + "/key.pem", fs::copy_options::overwrite_existing);
  TlsInfo i;
  i.cert_file = d + "/cert.pem";
  i.key_file = d + "/key.pem";
  auto ctx = make(i);
  auto first = ctx->server();
  EXPECT_EQ(ctx->server(), first);  // unchanged files: the same context
  fs::copy_file(f("bob.pem"), d + "/cert.new", fs::copy_options::overwrite_existing);
  fs::copy_file(f("bob-key.pem"), d + "/key.new", fs::copy_options::overwrite_existing);
  fs::rename(d + "/key.new", d + "/key.pem");
  fs::rename(d + "/cert.new", d + "/cert.pem");
  auto second = ctx->server();
  EXPECT_NE(second, first);
  X509* served = SSL_CTX_get0_certificate(second->native_handle());
  ASSERT_NE(served, nullptr);
  char cn[64] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(served), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "bob");
  std::ofstream(d + "/cert.pem") << "half written";
  EXPECT_EQ(ctx->server(), second);  // broken: the last good one stays
}

// write_now on a plain stream: one sendmsg of the buffers, the bytes the socket took; would_block
// once the peer stops reading and the socket's buffers are full; an error once the peer is
// gone.
TEST(StreamWriteNowTest, plainWritesWhatFitsThenWouldBlockThenFails) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Stream client(io);
  client.socket().connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();

  const std::string head = "HTTP/1.1 200 OK\r\n\r\n", body = "hello";
  std::array<asio::const_buffer, 3> bufs{asio::buffer(head), asio::const_buffer(),
                                         asio::buffer(body)};
  boost::system::error_code ec;
  EXPECT_EQ(client.write_now(bufs, ec), head.size() + body.size());
  EXPECT_FALSE(ec) << ec.message();
  std::string got(head.size() + body.size(), '\0');
  asio::read(server, asio::buffer(got));
  EXPECT_EQ(got, head + body);

  // The peer reads nothing: the socket takes less than offered, then nothing.
  const std::string chunk(1 << 20, 'x');
  size_t taken = 0, partial = 0;
  for (int i = 0; i < 256; ++i) {
    size_t n = client.write_now(asio::buffer(chunk), ec);
    if (ec) break;
    taken += n;
    if (n < chunk.size()) ++partial;
  }
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_GT(taken, 0u);
  EXPECT_GE(partial, 1u);
  EXPECT_EQ(client.write_now(asio::buffer(chunk), ec), 0u);
  EXPECT_EQ(ec, asio::error::would_block);

  // The peer closes with unread data (a reset): the next write fails, without SIGPIPE.
  server.close();
  client.write_now(asio::buffer(chunk), ec);
  if (ec == asio::error::would_block) {  // the reset may still be on its way
    for (int i = 0; i < 1000 && ec == asio::error::would_block; ++i) {
      client.socket().wait(tcp::socket::wait_write);
      client.write_now(asio::buffer(chunk), ec);
    }
  }
  EXPECT_TRUE(ec && ec != asio::error::would_block) << ec.message();

}

// A TLS stream: write_now encrypts and sends the gathered buffers in one call; once the peer stops
// reading it reports would_block, and async_write of the same bytes finishes the record OpenSSL
// began, so the peer reads every byte once, in order. Reads return what the records held, and
// the end of the connection without close_notify is stream_truncated, as with Asio's streams.
TEST_F(TlsTest, stream_tlsWriteNowThenAsyncWriteAndReads) {
  asio::io_context io;
  Stream s(io), c(io);
  ASSERT_NO_FATAL_FAILURE(handshake_pair(io, s, c));
  EXPECT_EQ(TlsContexts::verified_peer_common_name(s.native_ssl()), "alice");

  const std::string head = "HTTP/1.1 200 OK\r\n\r\n", body = "hello";
  std::array<asio::const_buffer, 3> bufs{asio::buffer(head), asio::const_buffer(), asio::buffer(body)};
  boost::system::error_code ec;
  EXPECT_EQ(c.write_now(bufs, ec), head.size() + body.size());
  EXPECT_FALSE(ec) << ec.message();
  std::string got(head.size() + body.size(), '\0');
  io.restart();
  asio::async_read(s, asio::buffer(got), [&](boost::system::error_code e, size_t) { ec = e; });
  io.run_for(std::chrono::seconds(10));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(got, head + body);

  // The server reads nothing: write_now takes records until the socket is full.
  std::string chunk(64 * 1024, '\0');
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>('a' + i % 26);
  std::string sent;
  size_t offset = 0;
  for (int i = 0; i < 4096; ++i) {
    size_t n = c.write_now(asio::buffer(chunk.data() + offset, chunk.size() - offset), ec);
    if (ec) break;
    ASSERT_GT(n, 0u);
    sent.append(chunk, offset, n);
    offset = (offset + n) % chunk.size();
  }
  ASSERT_EQ(ec, asio::error::would_block);
  EXPECT_GT(sent.size(), 0u);
  // The same bytes again, asynchronously, while the server reads everything.
  const std::string rest = chunk.substr(offset);
  sent += rest;
  boost::system::error_code write_ec = asio::error::would_block;
  io.restart();
  asio::async_write(c, asio::buffer(rest), [&](boost::system::error_code e, size_t n) {
    write_ec = e;
    EXPECT_EQ(n, rest.size());
    c.socket().shutdown(tcp::socket::shutdown_send, e);  // no close_notify
  });
  std::string received;
  std::array<char, 3000> part;
  std::function<void()> read_more = [&] {
    s.async_read_some(asio::buffer(part), [&](boost::system::error_code e, size_t n) {
      received.append(part.data(), n);
      if (e) return void(ec = e);
      read_more();
    });
  };
  ec = {};
  read_more();
  io.run_for(std::chrono::seconds(20));
  EXPECT_FALSE(write_ec) << write_ec.message();
  EXPECT_EQ(ec, asio::ssl::error::stream_truncated) << ec.message();
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent);
}

// Reads that OpenSSL can answer from what it already holds complete without the socket: the rest
// of a record read in small pieces, and a second record that arrived with the first. The client
// sends nothing more and keeps the connection open, so a read that waited for the socket would
// never complete.
TEST_F(TlsTest, stream_tlsReadsWhatOpenSslHoldsWithoutTheSocket) {
  asio::io_context io;
  Stream s(io), c(io);
  ASSERT_NO_FATAL_FAILURE(handshake_pair(io, s, c));

  // Two records, sent before the server reads (no Nagle delay for the second): one socket read
  // takes both.
  c.socket().set_option(tcp::no_delay(true));
  const std::string first = "GET /v2/keys/a HTTP/1.1\r\nHost: x\r\n\r\n", second = "GET /v2/keys/b HTTP/1.1\r\n\r\n";
  boost::system::error_code ec;
  ASSERT_EQ(c.write_now(asio::buffer(first), ec), first.size());
  ASSERT_EQ(c.write_now(asio::buffer(second), ec), second.size());
  ASSERT_FALSE(ec) << ec.message();
  // Both records are in the server's socket before it reads (loopback delivers them at once;
  // waited for, not slept on).
  const size_t both = 2 * 22 + first.size() + second.size();  // TLS 1.3 record: 5 + 16 + 1 bytes
  for (int i = 0; i < 1000 && s.socket().available() < both; ++i) {
    s.socket().wait(tcp::socket::wait_read);
  }
  ASSERT_GE(s.socket().available(), both);

  // The first record in pieces of 7 bytes, then the second whole.
  std::string got;
  std::array<char, 7> piece;
  std::array<char, 4096> whole;
  int reads = 0;
  std::function<void()> read_next = [&] {
    const bool small = got.size() < first.size();
    auto buf = small ? asio::buffer(piece) : asio::buffer(whole);
    s.async_read_some(buf, [&, small](boost::system::error_code e, size_t n) {
      ++reads;
      if (e) return void(ec = e);
      got.append(small ? piece.data() : whole.data(), n);
      if (got.size() < first.size() + second.size()) read_next();
    });
  };
  io.restart();
  read_next();
  io.run_for(std::chrono::seconds(10));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(got, first + second);
  EXPECT_EQ(reads, static_cast<int>((first.size() + 6) / 7) + 1);

  // One record alone, read in pieces: after the first piece its rest is decrypted inside
  // OpenSSL and nothing is left to read from the socket or the received bytes.
  const std::string third = "DELETE /v2/keys/c HTTP/1.1\r\n\r\n";
  ASSERT_EQ(c.write_now(asio::buffer(third), ec), third.size());
  std::string rest;
  std::function<void()> read_piece = [&] {
    s.async_read_some(asio::buffer(piece), [&](boost::system::error_code e, size_t n) {
      if (e) return void(ec = e);
      rest.append(piece.data(), n);
      if (rest.size() < third.size()) read_piece();
    });
  };
  io.restart();
  read_piece();
  io.run_for(std::chrono::seconds(10));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(rest, third);
}

}  // namespace
}  // namespace kvd::server::tls
