-- One database per service (each service owns its data), created on the first start.
CREATE DATABASE users;
CREATE DATABASE notes;
