"""The Lua scripts behind `engine.lease`: every write a leader makes, each one atomic with
the check that its fencing token is still the newest (`FENCE`), so that a leader that lost
its lease writes nothing. See `engine.lease` for the keys."""

from __future__ import annotations

import hashlib

REPLY_STREAM_LENGTH = 1000  # entries kept per replica stream, one per batch (`shared.replies`):
# about 12,000 answers at live batch sizes, and at least a quarter of a second of batches at
# the highest batch rate (a command per batch): far more than are in flight
MARKERS_KEPT = 1000
TRIM_EVERY = 16  # publishes per trim of the reply streams (each then holds at most about
# REPLY_STREAM_LENGTH plus this many batches)
FENCED = -1  # what a script returns when the token moved on

# KEYS[1] token, KEYS[2] lease; ARGV[1] token, ARGV[2] owner, ARGV[3] lease ms.
FENCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
"""

# KEYS[1] lease, KEYS[2] token; ARGV[1] owner, ARGV[2] lease ms. Returns the token, or 0
# when another owner holds the lease. The holder itself gets its token back (it is still
# the newest: any other acquisition would have replaced the lease's value).
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
local token = 0
if holder then token = tonumber(redis.call('GET', KEYS[2]) or '0') end
if token == 0 then token = redis.call('INCR', KEYS[2]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
"""

RENEW = FENCE + "return 1"

# KEYS[1] token, KEYS[2] lease; ARGV[1] token, ARGV[2] owner.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""

# Reply streams are trimmed once every TRIM_EVERY publishes, not on every append (a tenth
# less Redis CPU per command, when each answer was an entry) nor on every batch (per-batch
# work under live load).
TRIM_REPLIES = (
    """
for k = 6, #KEYS do redis.call('XTRIM', KEYS[k], 'MAXLEN', '~', '"""
    + str(REPLY_STREAM_LENGTH)
    + """') end
"""
)

# An entry on a reply stream (KEYS[k]: NOMKSTREAM, a replica that is gone gets none) and, on a
# single server (ARGV[11] '1'), the same entry as a message on the channel named after the
# stream: its id and fields joined by spaces (`shared.replies.notice_entry`). A replica
# subscribed to it is answered without a read to send again after every batch; the stream
# stays the record it catches up from after a reconnect. (On a cluster, PUBLISH reaches
# every node: there replicas read the streams.)
ANSWER = """
local function answer(key, ...)
  local id = redis.call('XADD', key, 'NOMKSTREAM', '*', ...)
  if id and ARGV[11] == '1' then redis.call('PUBLISH', key, table.concat({id, ...}, ' ')) end
end
"""

# A batch goes to the publish script as one argument, a run of frames, one per command
# (`frame`): far cheaper for Redis to take in than five arguments per command, and read in
# Lua with one `struct.unpack` per command.
FRAME = ">Bc0Hc0Bc0I4c0H"  # event entry id, request id, command entry id, events, reply key

# KEYS: token, lease, events, markers, published, then the reply streams of this batch.
# ARGV: token, owner, lease ms, marker id ('' for none), marker command id, '1' to append
# the replies too, the frames (below), who writes the marker's checkpoint, '1' to look for
# entries already published (a leader's publishes under its token until one skips none:
# after that only it appends, past everything before it), '1' to trim the reply streams (every
# TRIM_EVERY publishes: trimming is per-batch Redis work, and the streams are bounded
# loosely anyway), '1' to publish each reply entry on the channel named after its stream too
# (`ANSWER`), then for each reply stream (KEYS[k], from k = 6) its answers to this batch
# as one entry's value (ARGV[k + 6], `shared.replies`).
# The frames: event entry id `<last seq>-0`, request id, command entry id,
# encoded events, and the KEYS index of the asking replica's reply stream (0: none). Each
# event entry also records the publishing leader's token (field `t`). Entries at or below
# the stream's top were published before a crash or by the previous leader: they are a
# prefix of the batch (ids rise) and are skipped, with their replies: after a skip, each
# remaining command is answered in an entry of its own (`r`, `e`) instead of the batch's
# entries, which answer every command. Returns how many were skipped.
PUBLISH = (
    FENCE
    + ANSWER
    + """
local top = 0
if ARGV[9] == '1' then
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  if last[1] then top = tonumber(string.match(last[1][1], '^%d+')) end
end
local frames, unpack = ARGV[7], struct.unpack
local pos, n, skipped, skipping, newest = 1, #ARGV[7], 0, top > 0, nil
local replies = ARGV[6] == '1'
while pos <= n do
  local id, r, c, e, reply
  id, r, c, e, reply, pos = unpack('"""
    + FRAME
    + """', frames, pos)
  if skipping and tonumber(string.match(id, '^%d+')) <= top then
    skipped = skipped + 1
  else
    skipping = false
    redis.call('XADD', KEYS[3], id, 'r', r, 'c', c, 'e', e, 't', ARGV[1])
    if replies and reply > 0 and skipped > 0 then answer(KEYS[reply], 'r', r, 'e', e) end
  end
  newest = id
end
if replies and skipped == 0 then
  for k = 6, #KEYS do answer(KEYS[k], 'b', ARGV[k + 6]) end
end
if replies and ARGV[10] == '1' then"""
    + TRIM_REPLIES
    + """end
if newest then redis.call('SET', KEYS[5], string.match(newest, '^%d+')) end
if ARGV[4] ~= '' then
  pcall(redis.call, 'XADD', KEYS[4], 'MAXLEN', '~', '"""
    + str(MARKERS_KEPT)
    + """', ARGV[4], 'c', ARGV[5], 'w', ARGV[8])
end
return skipped
"""
)

# The replies of a batch whose events a replica has confirmed (same KEYS and ARGV as
# PUBLISH; ARGV[6] is the number of frames to skip, those published before).
REPLIES = (
    FENCE
    + ANSWER
    + """
local frames, unpack = ARGV[7], struct.unpack
local pos, n, skip = 1, #ARGV[7], tonumber(ARGV[6])
if skip == 0 then
  for k = 6, #KEYS do answer(KEYS[k], 'b', ARGV[k + 6]) end
  pos = n + 1
end
while pos <= n do
  local id, r, c, e, reply
  id, r, c, e, reply, pos = unpack('"""
    + FRAME
    + """', frames, pos)
  if skip > 0 then
    skip = skip - 1
  elseif reply > 0 then answer(KEYS[reply], 'r', r, 'e', e) end
end"""
    + TRIM_REPLIES
    + """return 1
"""
)

# KEYS: token, lease, markers, commands, state hash key, standby position.
# ARGV: token, owner, lease ms, marker id ('' for none), marker command id, hash entry id,
# state hash, trim-to command id ('' for none), '1' to store the state hash, '1' to release,
# who wrote the checkpoint.
# The trim never passes the standby's position: it still needs the commands after it.
CHECKPOINTED = (
    FENCE
    + """
if ARGV[4] ~= '' then
  pcall(redis.call, 'XADD', KEYS[3], 'MAXLEN', '~', '"""
    + str(MARKERS_KEPT)
    + """', ARGV[4], 'c', ARGV[5], 'w', ARGV[11])
end
pcall(redis.call, 'XADD', KEYS[3], 'MAXLEN', '~', '"""
    + str(MARKERS_KEPT)
    + """', ARGV[6], 'h', ARGV[7], 'w', ARGV[11])
local trimmed = 0
local trim_to = ARGV[8]
local standby = redis.call('GET', KEYS[6])
if trim_to ~= '' and standby then
  local position, owner = string.match(standby, '^(%S+) (%S+)')
  local a, b = string.match(trim_to, '^(%d+)-(%d+)$')
  local c, d = string.match(position or '', '^(%d+)-(%d+)$')
  local behind = c and (tonumber(c) < tonumber(a) or (c == a and tonumber(d) < tonumber(b)))
  if behind and owner ~= ARGV[2] then trim_to = position end
end
if trim_to ~= '' then trimmed = redis.call('XTRIM', KEYS[4], 'MINID', trim_to) end
if ARGV[9] == '1' then redis.call('SET', KEYS[5], ARGV[7]) end
if ARGV[10] == '1' then redis.call('DEL', KEYS[2]) end
return trimmed
"""
)

# KEYS: token, lease, book key; ARGV: token, owner, lease ms, channel, message, expiry s.
BOOK = (
    FENCE
    + """
redis.call('PUBLISH', ARGV[4], ARGV[5])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6])
return 1
"""
)


SHA = {
    script: hashlib.sha1(script.encode()).hexdigest()
    for script in (ACQUIRE, RENEW, RELEASE, PUBLISH, REPLIES, CHECKPOINTED, BOOK)
}
