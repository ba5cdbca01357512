#!lua name=twittercore1
-- Server-side functions of the Redis backend (FUNCTION LOAD on every master).
--
-- Every key of one call shares the bucket's hash tag, so a call runs on the
-- bucket's master, atomically.  Positions inside a bucket are its hybrid
-- logical clock values (microseconds, kept below 2^53 so Lua's doubles hold
-- them exactly); the client turns clock c of bucket b into the store-wide id
-- c * 1024 + b.  KEYS[1] is always the bucket's clock key "<tag>:c"; the
-- other keys of the bucket are named from its prefix.  The client declares
-- every key a call touches after KEYS[1] (unused here): Redis checks declared
-- keys only, and while a slot is half moved it must refuse a call up front
-- (TRYAGAIN) rather than fail it in the middle, half applied.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function fmt(x) return string.format('%.0f', x) end

local function prefix(keys) return string.sub(keys[1], 1, -2) end

-- Raise the clocks of buckets (prefixes `ps`, all on this master) to at least
-- now and their `floors` (numbers, or nil: none) without taking a position;
-- returns the clocks as strings.  The raise is neither logged (AOF) nor
-- replicated: readers close buckets on every read, and an fsync each would
-- cost more than the read.  A master that restarts, or the replica that
-- replaces it, starts from its own clock, which is past every close it missed
-- as long as server clocks agree to within the failover time (docs/redis.md).
-- A home read closes about as many buckets as its sink follows sources, so
-- what a close costs beyond its one SET (formatting the clock, switching
-- replication off and on) is paid once per call.  (One MGET and one MSET
-- would be cheaper still, but Redis refuses a multi-key command across slots
-- even inside a function.)
local function close_many(ps, floors, now)
  local base = now or now_us()
  local bases, out = fmt(base), {}
  redis.set_repl(redis.REPL_NONE)
  for i, p in ipairs(ps) do
    local n, ns = base, bases
    local f = floors and floors[i] or 0
    if f > n then n, ns = f, fmt(f) end
    -- One command where the clock is behind (nearly always): set it and read
    -- what it was; put back a clock that was ahead (atomic: nobody sees it).
    local old = redis.call('SET', p .. 'c', ns, 'GET')
    if old and tonumber(old) > n then
      redis.call('SET', p .. 'c', old)
      out[i] = old
    else
      out[i] = ns
    end
  end
  redis.set_repl(redis.REPL_ALL)
  return out
end

-- One bucket's close: its clock after, as a number.
local function close(p, floor, now) return tonumber(close_many({p}, {floor}, now)[1]) end

-- Take the bucket's next position: above every earlier one, now and `floor`.
local function advance(p, floor)
  local c = tonumber(redis.call('GET', p .. 'c') or '0')
  local n = math.max(c + 1, now_us(), floor)
  redis.call('SET', p .. 'c', fmt(n))
  redis.call('SET', p .. 'l', fmt(n))
  return n
end

local function wake(p, c)
  redis.call('PUBLISH', string.match(p, '^{(.-)%.') .. ':wake', fmt(c) .. ':' .. string.match(p, '%.(%d+)}'))
end

-- ARGV: floor, time, retention, n, then n x (source, payload, key or ''), then
-- feed (1: the namespace fans out on write, so each new event also enters the
-- bucket's feed 'f', score its clock, member "clock:source", for the workers).
-- Returns per item the new clock, or {clock, value} when its key was recorded;
-- {'deleted', index, clock} (nothing written) when a recorded key's event is gone.
local function publish(keys, args)
  local p = prefix(keys)
  local floor, now, retention, n = tonumber(args[1]), args[2], tonumber(args[3]), tonumber(args[4])
  local cutoff = tonumber(now) - retention
  local feed = args[5 + 3 * n] == '1'
  local out, seen = {}, {}
  for i = 1, n do
    local source, key = args[3 + 3 * i - 1], args[3 + 3 * i + 1]
    if key ~= '' then
      local rec = redis.call('HGET', p .. 'k', source .. ':' .. key)
      if rec then
        local c, at = string.match(rec, '^(%d+):(.*)$')
        if tonumber(at) >= cutoff then
          local value = redis.call('HGET', p .. 'e', c)
          if not value then return {'deleted', i, c} end
          seen[i] = {c, value}
        end
      end
    end
  end
  local last = nil
  for i = 1, n do
    if seen[i] then
      out[i] = seen[i]
    else
      local source, payload, key = args[3 + 3 * i - 1], args[3 + 3 * i], args[3 + 3 * i + 1]
      local c = advance(p, floor)
      local cs = fmt(c)
      redis.call('HSET', p .. 'e', cs, source .. ':' .. now .. ':' .. payload)
      redis.call('ZADD', p .. 'g:' .. source, c, cs)
      if feed then redis.call('ZADD', p .. 'f', c, cs .. ':' .. source) end
      if key ~= '' then
        local field = source .. ':' .. key
        redis.call('HSET', p .. 'k', field, cs .. ':' .. now)
        redis.call('ZADD', p .. 'kt', now, field)
      end
      out[i] = cs
      last = c
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', p .. 'kt', '-inf', '(' .. cutoff, 'LIMIT', 0, 64)
  for _, field in ipairs(expired) do
    redis.call('HDEL', p .. 'k', field)
    redis.call('ZREM', p .. 'kt', field)
  end
  if last then wake(p, last) end
  return out
end

-- ARGV: floor.  Returns {clock, last mutation clock}.
local function close_bucket(keys, args)
  local p = prefix(keys)
  local c = close(p, tonumber(args[1]))
  return {fmt(c), redis.call('GET', p .. 'l') or '0'}
end

-- The clocks of a log in (lo, hi] (lo given with its '('): the oldest `n`, or the newest `n`, newest first.
local function clocks_in(key, lo, hi, n, oldest)
  if oldest then return redis.call('ZRANGEBYSCORE', key, lo, hi, 'LIMIT', 0, n) end
  return redis.call('ZREVRANGEBYSCORE', key, hi, lo, 'LIMIT', 0, n)
end

-- ARGV: lo (exclusive), hi (inclusive) clocks, limit, oldest (0/1), values (0/1), sources...
-- Closes the bucket, then per source the newest (or oldest) `limit` clocks in
-- (lo, hi], with their values when asked.  Returns {clock, ids1, vals1, ids2, ...}.
local function range(keys, args)
  local p = prefix(keys)
  local c = close(p, 0)
  local lo, hi, limit = '(' .. args[1], args[2], tonumber(args[3])
  local out = {fmt(c)}
  for i = 6, #args do
    local ids = clocks_in(p .. 'g:' .. args[i], lo, hi, limit, args[4] == '1')
    out[#out + 1] = ids
    if args[5] == '1' and #ids > 0 then
      out[#out + 1] = redis.call('HMGET', p .. 'e', unpack(ids))
    else
      out[#out + 1] = {}
    end
  end
  return out
end

-- A home read's ordering step for one master in one call: it closes every
-- bucket it is given and merges their sources' ids, returning only the
-- newest (or oldest) `limit` of this master.  A home read spans about as
-- many buckets as the sink follows sources; a tc_range each cost 15 us of
-- Lua entry alone, and returning every source's `limit` ids cost the client
-- more than the read.  KEYS[1] is the first bucket's clock key, which routes
-- the call; the other buckets' keys are in other slots and not declared, so
-- a bucket whose slot is moving makes the whole call fail ("non local key")
-- and the client falls back to one tc_range per bucket.  The call writes
-- only closes, which are safe to half apply.
-- ARGV: limit, oldest (0/1), then per bucket: prefix, bucket, lo, hi (clocks,
-- (lo, hi]), n, n sources.  Returns {least closed clock, its bucket, the ids
-- (clock * 1024 + bucket) packed as ascending little-endian uint64s}.
local function ranges(keys, args)
  local now = now_us()
  local limit, oldest = tonumber(args[1]), args[2] == '1'
  -- Ids compare as (clock, bucket); the heap keeps the next id to take on top.
  local function first(x, y)
    if x[1] ~= y[1] then return (x[1] < y[1]) == oldest end
    return (x[2] < y[2]) == oldest
  end
  -- Sources are read lazily: a few ids each first (about what each would give
  -- if all were equally busy), more only for a source the merge drains.
  local function read(key, lo, hi, n) return clocks_in(key, lo, hi, n, oldest) end
  local sources, i = 0, 3
  while i <= #args do
    sources = sources + tonumber(args[i + 4])
    i = i + 5 + tonumber(args[i + 4])
  end
  local batch = math.min(limit, math.ceil(limit / math.max(sources, 1)) + 1)
  local ps = {}
  i = 3
  while i <= #args do
    ps[#ps + 1] = args[i]
    i = i + 5 + tonumber(args[i + 4])
  end
  local cs = close_many(ps, nil, now)
  local heap, minc, minb, at = {}, nil, nil, 0
  i = 3
  while i <= #args do
    local p, b, lo, hi, n = args[i], tonumber(args[i + 1]), '(' .. args[i + 2], args[i + 3], tonumber(args[i + 4])
    at = at + 1
    local c = tonumber(cs[at])
    if minc == nil or c < minc or (c == minc and b < minb) then minc, minb = c, b end
    for j = i + 5, i + 4 + n do
      local key = p .. 'g:' .. args[j]
      local ids = read(key, lo, hi, batch)
      -- {clock, bucket, ids, position, key, lo, hi, maybe more}
      if #ids > 0 then heap[#heap + 1] = {tonumber(ids[1]), b, ids, 1, key, lo, hi, #ids == batch} end
    end
    i = i + 5 + n
  end
  local size = #heap
  local function down(k)
    while true do
      local l, best = 2 * k, k
      if l <= size and first(heap[l], heap[best]) then best = l end
      if l + 1 <= size and first(heap[l + 1], heap[best]) then best = l + 1 end
      if best == k then return end
      heap[k], heap[best] = heap[best], heap[k]
      k = best
    end
  end
  for k = math.floor(size / 2), 1, -1 do down(k) end
  local taken = {}
  while size > 0 and #taken < limit do
    local top = heap[1]
    local c = top[1]
    local hi32 = math.floor(c / 4194304)
    taken[#taken + 1] = struct.pack('<I4I4', (c - hi32 * 4194304) * 1024 + top[2], hi32)
    top[4] = top[4] + 1
    if top[4] > #top[3] and top[8] and #taken < limit then
      -- Drained but not exhausted: the rest of what may still be taken, past c.
      local want = limit - #taken
      if oldest then top[3] = read(top[5], '(' .. fmt(c), top[7], want)
      else top[3] = read(top[5], top[6], '(' .. fmt(c), want) end
      top[4], top[8] = 1, #top[3] == want
    end
    if top[4] <= #top[3] then
      top[1] = tonumber(top[3][top[4]])
    else
      heap[1] = heap[size]
      heap[size] = nil
      size = size - 1
    end
    if size > 0 then down(1) end
  end
  if not oldest then
    local n = #taken
    for k = 1, math.floor(n / 2) do taken[k], taken[n + 1 - k] = taken[n + 1 - k], taken[k] end
  end
  return {fmt(minc or 0), minb or 0, table.concat(taken)}
end

-- ARGV: after (exclusive clock), limit, sources...  For tails: closes the
-- bucket, then per source the oldest `limit` events and deletion notices
-- after `after`.  Returns {clock, ids1, vals1, dels1, ...}.
local function since_in(p, after, limit, sources, first, last, c)
  local lo = '(' .. after
  local out = {c}
  for i = first, last do
    local ids = redis.call('ZRANGEBYSCORE', p .. 'g:' .. sources[i], lo, '+inf', 'LIMIT', 0, limit)
    out[#out + 1] = ids
    if #ids > 0 then out[#out + 1] = redis.call('HMGET', p .. 'e', unpack(ids)) else out[#out + 1] = {} end
    out[#out + 1] = redis.call('ZRANGEBYSCORE', p .. 'd:' .. sources[i], lo, '+inf', 'LIMIT', 0, limit)
  end
  return out
end

local function since(keys, args)
  local p = prefix(keys)
  return since_in(p, args[1], tonumber(args[2]), args, 3, #args, fmt(close(p, 0)))
end

-- tc_since over several buckets of this master in one call, as tc_ranges is
-- for tc_range (same routing, same refusal while a slot moves).  ARGV: limit,
-- then per bucket: prefix, after (exclusive clock), n, n sources.  Returns
-- one tc_since answer per bucket.
local function sinces(keys, args)
  local limit, out, ps, i = tonumber(args[1]), {}, {}, 2
  while i <= #args do
    ps[#ps + 1] = args[i]
    i = i + 3 + tonumber(args[i + 2])
  end
  local cs = close_many(ps)
  i = 2
  while i <= #args do
    local n = tonumber(args[i + 2])
    out[#out + 1] = since_in(args[i], args[i + 1], limit, args, i + 3, i + 2 + n, cs[#out + 1])
    i = i + 3 + n
  end
  return out
end

-- ARGV: floor, clock of the event.  Returns {seq clock, value} or nil.
local function delete(keys, args)
  local p = prefix(keys)
  local value = redis.call('HGET', p .. 'e', args[2])
  if not value then return nil end
  local source = string.match(value, '^(%d+):')
  redis.call('HDEL', p .. 'e', args[2])
  redis.call('ZREM', p .. 'g:' .. source, args[2])
  local s = advance(p, tonumber(args[1]))
  redis.call('ZADD', p .. 'd:' .. source, s, fmt(s) .. ':' .. args[2])
  wake(p, s)
  return {fmt(s), value}
end

-- The sink-side edge, which is authoritative.  ARGV: floor, follow (1/0),
-- sink, sources (20-digit, zero-padded)...  Each change takes a position,
-- enters the sink's edge history and the bucket's pending set (cleared once
-- the source side is written).  Returns {clock, source} per change.
local function edge(keys, args)
  local p = prefix(keys)
  local floor, follow, sink = tonumber(args[1]), args[2] == '1', args[3]
  local out, last = {}, nil
  for i = 4, #args do
    local source = args[i]
    local has = redis.call('ZSCORE', p .. 'o:' .. sink, source)
    if follow ~= (has ~= false) then
      if follow then redis.call('ZADD', p .. 'o:' .. sink, 0, source)
      else redis.call('ZREM', p .. 'o:' .. sink, source) end
      local s = advance(p, floor)
      redis.call('ZADD', p .. 'h:' .. sink, s, fmt(s) .. ':' .. source .. ':' .. args[2])
      redis.call('SADD', p .. 'p', sink .. ':' .. source)
      out[#out + 1] = {fmt(s), source}
      last = s
    end
  end
  if last then wake(p, last) end
  return out
end

-- The source-side edge, applied only if newer than what it records (two
-- processes may deliver a follow and an unfollow of one pair in either
-- order).  ARGV: source, sink (padded), version (sink bucket, clock), follow.
local function mirror(keys, args)
  local p = prefix(keys)
  local source, sink, version = args[1], args[2], args[3]
  local known = redis.call('HGET', p .. 'v:' .. source, sink)
  if known and #known >= #version and known >= version then return 0 end
  redis.call('HSET', p .. 'v:' .. source, sink, version)
  if args[4] == '1' then redis.call('ZADD', p .. 'i:' .. source, 0, sink)
  else redis.call('ZREM', p .. 'i:' .. source, sink) end
  return 1
end

-- ARGV: sink.  Closes the bucket and returns {clock, history...}.
local function history(keys, args)
  local p = prefix(keys)
  local c = close(p, 0)
  return {fmt(c), redis.call('ZRANGE', p .. 'h:' .. args[1], 0, -1)}
end

-- The newest mutation clock of several buckets of this master (their 'l'
-- keys), for a waiter's backstop poll: one call per master instead of one GET
-- per bucket.  Same routing and refusal as tc_ranges.  ARGV: per bucket:
-- prefix, bucket.  Returns {clock, bucket} of the newest (clock 0: none).
local function newest(keys, args)
  local best, at = 0, 0
  for i = 1, #args, 2 do
    local l = tonumber(redis.call('GET', args[i] .. 'l') or '0')
    local b = tonumber(args[i + 1])
    if l > best or (l == best and b > at) then best, at = l, b end
  end
  return {fmt(best), at}
end

-- tc_close over several buckets of this master (for last_id(), which closes
-- every bucket).  Same routing and refusal as tc_ranges.  ARGV: per bucket:
-- prefix, floor.  Returns per bucket {clock, last mutation clock}.
local function closes(keys, args)
  local ps, floors = {}, {}
  for i = 1, #args, 2 do
    ps[#ps + 1] = args[i]
    floors[#ps] = tonumber(args[i + 1])
  end
  local cs, out = close_many(ps, floors), {}
  for i, p in ipairs(ps) do out[i] = {cs[i], redis.call('GET', p .. 'l') or '0'} end
  return out
end

-- Fan-out on write (docs/redis.md, "Fan-out on write").
--
-- A worker's round over several buckets of this master: first marks each
-- bucket's feed done through `done` (raises its frontier 'fr' and trims the
-- feed below it: every event at or below the frontier is in every window it
-- belongs in), then returns what is left to do.  Same routing and refusal as
-- tc_ranges.  ARGV: limit, then per bucket: prefix, done (clock).  Returns
-- per bucket {clock, frontier, the oldest `limit` feed entries above the
-- frontier}; read in one step with the clock, so when fewer than `limit`
-- come back, every event up to that clock is among them.
local function feeds(keys, args)
  local limit, out = tonumber(args[1]), {}
  for i = 2, #args, 2 do
    local p, done = args[i], tonumber(args[i + 1])
    local fr = tonumber(redis.call('GET', p .. 'fr') or '0')
    if done > fr then
      redis.call('SET', p .. 'fr', fmt(done))
      redis.call('ZREMRANGEBYSCORE', p .. 'f', '-inf', fmt(done))
      fr = done
    end
    local entries = redis.call('ZRANGEBYSCORE', p .. 'f', '(' .. fmt(fr), '+inf', 'LIMIT', 0, limit)
    out[#out + 1] = {redis.call('GET', p .. 'c') or '0', fmt(fr), entries}
  end
  return out
end

-- A page's events, from several buckets of this master in one call: a page of
-- 50 spans about 40 buckets, and one HMGET reply each cost the client more
-- than the read itself.  Same routing and refusal as tc_ranges.  ARGV: per
-- bucket: prefix, n, n clocks.  Returns the values in that order, flat (nil
-- for an event that is gone).
local function events(keys, args)
  local out, i = {}, 1
  while i <= #args do
    local n = tonumber(args[i + 1])
    local values = redis.call('HMGET', args[i] .. 'e', unpack(args, i + 2, i + 1 + n))
    for j = 1, n do out[#out + 1] = values[j] end
    i = i + 2 + n
  end
  return out
end

-- Leases that split the fan-out work between the workers of many processes
-- (docs/redis.md, "Workers and leases").  Only an economy: every step of a
-- worker is idempotent, so two workers on one bucket (a lease that expired
-- while its holder was paused) cost twice, never disagree.
-- tc_lease: KEYS[2] the lease.  ARGV: owner, ttl (ms), take (1: take or
-- renew it if free or ours; 0: drop it if ours).  Returns 1 if ours after.
local function lease(keys, args)
  local key, owner = keys[2], args[1]
  local holder = redis.call('GET', key)
  if args[3] ~= '1' then
    if holder == owner then redis.call('DEL', key) end
    return 0
  end
  if holder and holder ~= owner then return 0 end
  redis.call('SET', key, owner, 'PX', args[2])
  return 1
end

-- tc_workers: KEYS[2] the namespace's worker registry (owner -> expiry, the
-- server's clock in ms).  ARGV: owner, ttl (ms), join (1) or leave (0).
-- Returns how many workers are alive.
local function workers(keys, args)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if args[3] == '1' then
    redis.call('ZADD', keys[2], fmt(now + tonumber(args[2])), args[1])
  else
    redis.call('ZREM', keys[2], args[1])
  end
  redis.call('ZREMRANGEBYSCORE', keys[2], '-inf', fmt(now))
  return redis.call('ZCARD', keys[2])
end

-- A write-mode home read's first step, per bucket of its sources: close the
-- bucket and return its clock, frontier and last mutation clock, and with
-- celebrities wanted (hybrid) the sources the workers no longer fan out (the
-- window misses nothing of a bucket whose last mutation is at or below its
-- frontier).  ARGV: celebrities wanted (0/1), then per bucket: prefix.
-- tc_front answers {clock, frontier, last, celebrities} for one bucket;
-- tc_fronts the same for each bucket in one flat array.
local function fronts(keys, args)
  local ps, out, stars = {}, {}, args[1] == '1'
  for i = 2, #args do ps[#ps + 1] = args[i] end
  local cs = close_many(ps)
  -- One flat reply: nested ones cost the server and the client a reply header per bucket.
  for i, p in ipairs(ps) do
    out[#out + 1] = cs[i]
    out[#out + 1] = redis.call('GET', p .. 'fr') or '0'
    out[#out + 1] = redis.call('GET', p .. 'l') or '0'
    if stars then out[#out + 1] = redis.call('SMEMBERS', p .. 'cb') end
  end
  return out
end

local function front(keys, args)
  local p = prefix(keys)
  return {fmt(close(p, 0)), redis.call('GET', p .. 'fr') or '0', redis.call('GET', p .. 'l') or '0',
          args[1] == '1' and redis.call('SMEMBERS', p .. 'cb') or {}}
end

-- A sink's window: a sorted set of ids as 16 hex digits (lexicographic order is
-- numeric order; scores are all 0), the newest `size` kept.  'wt' holds, per
-- sink, the window's floor: the window has every id of the sink's sources
-- above it (below it, the logs answer).  ARGV: sink, size, floor (hex or ''),
-- ids...  Returns the window's size.
local function add_to_window(p, sink, size, floor, args, first, last)
  local w = p .. 'w:' .. sink
  for i = first, last, 256 do
    local chunk = {}
    for j = i, math.min(i + 255, last) do
      chunk[#chunk + 1] = 0
      chunk[#chunk + 1] = args[j]
    end
    redis.call('ZADD', w, unpack(chunk))
  end
  local n = redis.call('ZCARD', w)
  if n > size then
    local gone = redis.call('ZRANGE', w, 0, n - size - 1)
    redis.call('ZREMRANGEBYRANK', w, 0, n - size - 1)
    if floor == '' or gone[#gone] > floor then floor = gone[#gone] end
    n = size
  end
  if floor ~= '' then
    local old = redis.call('HGET', p .. 'wt', sink)
    if not old or floor > old then redis.call('HSET', p .. 'wt', sink, floor) end
  end
  return n
end

local function window_add(keys, args)
  return add_to_window(prefix(keys), args[1], tonumber(args[2]), args[3], args, 4, #args)
end

-- tc_window_add over many sinks of this master in one call: a worker's round
-- reaches every follower of what it fans out, and one call each cost more in
-- entry than the adds.  Same routing and refusal as tc_ranges (adds are
-- idempotent: a half-applied call is retried whole).  ARGV: size, then per
-- sink: prefix, sink, floor (hex or ''), n, n ids.
local function windows_add(keys, args)
  local size, i = tonumber(args[1]), 2
  while i <= #args do
    local n = tonumber(args[i + 3])
    add_to_window(args[i], args[i + 1], size, args[i + 2], args, i + 4, i + 3 + n)
    i = i + 4 + n
  end
  return 1
end

-- ARGV: sink, lo (hex, exclusive), hi (hex, inclusive), limit, oldest (0/1).
-- Returns {floor or '', ids newest first (or oldest first)}.
local function window_read(keys, args)
  local p = prefix(keys)
  local w, limit = p .. 'w:' .. args[1], tonumber(args[4])
  local ids
  if args[5] == '1' then ids = redis.call('ZRANGEBYLEX', w, '(' .. args[2], '[' .. args[3], 'LIMIT', 0, limit)
  else ids = redis.call('ZREVRANGEBYLEX', w, '[' .. args[3], '(' .. args[2], 'LIMIT', 0, limit) end
  return {redis.call('HGET', p .. 'wt', args[1]) or '', ids}
end

redis.register_function('tc_publish', publish)
redis.register_function{function_name = 'tc_feeds', callback = feeds, flags = {'allow-cross-slot-keys'}}
redis.register_function{function_name = 'tc_fronts', callback = fronts, flags = {'allow-cross-slot-keys'}}
redis.register_function('tc_front', front)
redis.register_function('tc_window_add', window_add)
redis.register_function{function_name = 'tc_windows_add', callback = windows_add, flags = {'allow-cross-slot-keys'}}
redis.register_function('tc_window_read', window_read)
redis.register_function{function_name = 'tc_events', callback = events, flags = {'allow-cross-slot-keys', 'no-writes'}}
redis.register_function('tc_lease', lease)
redis.register_function('tc_workers', workers)
redis.register_function{function_name = 'tc_closes', callback = closes, flags = {'allow-cross-slot-keys'}}
redis.register_function{function_name = 'tc_newest', callback = newest, flags = {'allow-cross-slot-keys', 'no-writes'}}
redis.register_function('tc_close', close_bucket)
redis.register_function('tc_range', range)
redis.register_function('tc_since', since)
redis.register_function{function_name = 'tc_sinces', callback = sinces, flags = {'allow-cross-slot-keys'}}
redis.register_function{function_name = 'tc_ranges', callback = ranges, flags = {'allow-cross-slot-keys'}}
redis.register_function('tc_delete', delete)
redis.register_function('tc_edge', edge)
redis.register_function('tc_mirror', mirror)
redis.register_function('tc_history', history)
