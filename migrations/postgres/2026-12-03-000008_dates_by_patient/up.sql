-- A search names its patients (or ids, or identifiers); a date criterion then narrows what those
-- found, read through this index by the patients the candidates belong to, rather than through
-- every date of the type. No query reads the dates of a type as a whole.
CREATE INDEX search_dates_patient ON search_dates (resource_type, patient, param);
