-- One database per service that owns data; the image runs this once, on an empty data volume.
CREATE DATABASE auth;
CREATE DATABASE patient;
CREATE DATABASE billing;
CREATE DATABASE analytics;
