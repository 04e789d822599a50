-- Prints a TCP port on 127.0.0.1 that nothing listened on a moment ago
-- (bound to port 0, read back, closed). Used by run_nginx_test.sh.
local ffi = require "ffi"

ffi.cdef [[
struct bq_free_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, uint32_t len);
int getsockname(int fd, void *addr, uint32_t *len);
int close(int fd);
uint16_t ntohs(uint16_t);
uint32_t htonl(uint32_t);
]]

local C = ffi.C
local fd = C.socket(2, 1, 0) -- AF_INET, SOCK_STREAM
assert(fd >= 0, "socket")
local sa = ffi.new("struct bq_free_sockaddr_in")
sa.family = 2
sa.addr = C.htonl(0x7f000001)
assert(C.bind(fd, sa, ffi.sizeof(sa)) == 0, "bind")
local len = ffi.new("uint32_t[1]", ffi.sizeof(sa))
assert(C.getsockname(fd, sa, len) == 0, "getsockname")
io.write(C.ntohs(sa.port), "\n")
C.close(fd)
