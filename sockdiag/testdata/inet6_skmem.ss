LISTEN 3      8      [::1]:38857  [::]:*     ino:86435 sk:30a4 cgroup:unreachable:1 v6only:1 <->
	 skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0)
LISTEN 0      16     [::1]:55899  [::]:*     ino:86427 sk:30a7 cgroup:unreachable:1 v6only:1 <->
	 skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0)
ESTAB  0      0      [::1]:34288 [::1]:38857 ino:86436 sk:30aa cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)       
ESTAB  0      0      [::1]:34290 [::1]:38857 ino:86437 sk:30ab cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)       
ESTAB  0      0      [::1]:34298 [::1]:38857 ino:86438 sk:30ac cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)       
ESTAB  1000   0      [::1]:55899 [::1]:57878 ino:86431 sk:30af cgroup:unreachable:1 <->
	 skmem:(r1832,rb131072,t0,tb3939840,f2264,w0,o0,bl0,d0) 
ESTAB  0      0      [::1]:38857 [::1]:34288 ino:0 sk:30b5 cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)           
ESTAB  0      0      [::1]:57874 [::1]:55899 ino:86428 sk:30b6 cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)       
ESTAB  5000   0      [::1]:57878 [::1]:55899 ino:86430 sk:30b7 cgroup:unreachable:1 <->
	 skmem:(r5832,rb131072,t0,tb3939840,f2360,w0,o0,bl0,d0) 
ESTAB  0      0      [::1]:55899 [::1]:57874 ino:86429 sk:30b8 cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)       
ESTAB  0      0      [::1]:38857 [::1]:34290 ino:0 sk:30b9 cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)           
ESTAB  0      0      [::1]:38857 [::1]:34298 ino:0 sk:30bb cgroup:unreachable:1 <->
	 skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0)           
