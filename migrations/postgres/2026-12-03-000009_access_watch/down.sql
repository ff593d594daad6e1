DROP TABLE access_alerts;
DROP TABLE reach_marks;
