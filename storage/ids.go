package storage

import "time"

// Message ids are snowflake ids: 41 bits of milliseconds since
// SnowflakeEpochMillis, then 10 bits of node and 12 of sequence. A row's id
// therefore encodes when it was added, and time ranges map to id ranges
// of the primary key.

// SnowflakeEpochMillis is the epoch of message ids in Unix milliseconds:
// the default of github.com/bwmarrin/snowflake (Twitter's epoch), which
// DotNetCore.CAP's ids share.
const SnowflakeEpochMillis int64 = 1288834974657

// snowflakeTimeShift is the position of the time in an id.
const snowflakeTimeShift = 22

// IDTime returns the time encoded in message id id, to the millisecond.
func IDTime(id int64) time.Time {
	return time.UnixMilli((id >> snowflakeTimeShift) + SnowflakeEpochMillis).UTC()
}

// MinIDAt returns the smallest message id made at or after t.
func MinIDAt(t time.Time) int64 {
	return max(t.UnixMilli()-SnowflakeEpochMillis, 0) << snowflakeTimeShift
}

// IDMillis returns the Unix milliseconds encoded in id: a backend's
// histogram divides it by the bucket width in SQL as
// (id >> 22) + SnowflakeEpochMillis.
func IDMillis(id int64) int64 { return (id >> snowflakeTimeShift) + SnowflakeEpochMillis }
