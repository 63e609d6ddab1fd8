-- Every booking counted once in its window: bookings, then the windows' sum (equal if so).
SELECT (SELECT count(*) FROM bookings), (SELECT coalesce(sum(booked), 0) FROM windows);
