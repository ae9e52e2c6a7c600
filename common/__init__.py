"""Pieces every stage of the pipeline shares: config, money, time, message schema, row keys, clients."""

import os

# gRPC's fork handlers exist for a child that goes on using gRPC; every process here forks only to
# exec another program (the job its Spark JVM, the demo and the tests the pipeline's commands). With
# them on, grpcio from 1.81 on sometimes breaks a Popen made while a channel is open (its poller hits
# "epoll_wait error: Bad file descriptor" and the child dies before exec: grpc/grpc#43055). 5 of 200
# Popens failed so with a Bigtable channel open, none with this off. gRPC reads it when it is first
# imported, which is after this package in every entry point.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
