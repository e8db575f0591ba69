-- Each wrk thread buys for its own range of user ids, one new user per request.
local threads = {}
function setup(thread) thread:set("base", #threads * 100000000); table.insert(threads, thread) end
function init(args) n = 0 end
function request() n = n + 1; return wrk.format("GET", "/buy/" .. (base + n)) end
